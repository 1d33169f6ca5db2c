"""A study read from Clinica's CAPS (t1-linear outputs) instead of raw BIDS."""

import shutil

import pandas as pd
import pytest

from conftest import renamed_subject_copy
from medaug.data.clinica import read_caps_t1_linear, write_labels
from medaug.errors import ConfigError
from medaug.study.config import StudyConfig
from medaug.study.pipeline import run_study


def _config(output, data, **changes):
    return StudyConfig.from_dict({
        "name": "caps", "output": str(output), "seed": 0, "data": data,
        "preprocessing": {"enabled": True, "size": [12, 14, 12],
                          "pipeline": {"registration": {"learning_rate": 1.0, "finest_level": "image"}}},
        "split": {"test_per_label": 1, "p_threshold": 0.0}, "conditions": ["real"],
        "classifiers": ["cnn", "sklearn-knn"], "classifier_training": {"epochs": 3, "batch_size": 4}, "runs": 1,
        **changes})


@pytest.mark.parametrize("data, message", [
    ({"caps": "c"}, "needs its cohort table"),
    ({"caps": "c", "labels_tsv": "l.tsv", "bids": "b"}, "not both"),
    ({"bids": "b", "labels_tsv": "l.tsv"}, "labels_tsv is the cohort table of data.caps"),
    ({"caps": "c", "labels": "labels.tsv"}, "give a labels TSV as data.labels_tsv"),
    ({}, "needs bids: .* or caps:"),
])
def test_caps_input_settings_are_checked(data, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        _config(tmp_path / "out", data)


@pytest.mark.slow
def test_a_caps_study_gives_the_results_of_the_bids_study_it_came_from(study_cohort, tmp_path):
    from_bids = run_study(_config(tmp_path / "bids_study", {"bids": str(study_cohort)}))
    # a training image under another subject id, registered again by `medaug predict`: the same voxels
    # (CPU t1-linear is deterministic), refused by its hash
    split = pd.read_csv(tmp_path / "bids_study" / "split" / "split.tsv", sep="\t").set_index("participant_id")["split"]
    copy = renamed_subject_copy(study_cohort, split[split == "train"].index[0], "sub-NEW0001", tmp_path / "copy")
    from medaug.study.predict import predict

    again = predict(tmp_path / "bids_study", copy, tmp_path / "copied").predictions.set_index("participant_id")
    assert again.at["sub-NEW0001", "qc_status"] == "ok"
    assert "identical to the study's training image" in again.at["sub-NEW0001", "reason"]
    # a CAPS tree written the way Clinica names it: the 1 mm crop images only, half under the older naming
    made = read_caps_t1_linear(tmp_path / "bids_study" / "caps")
    qc = pd.read_csv(tmp_path / "bids_study" / "caps" / "t1_linear_qc.tsv", sep="\t")
    made = made.merge(qc.loc[qc["status"] == "ok", ["participant_id", "session_id"]])
    caps = tmp_path / "clinica_caps"
    for index, row in enumerate(made.itertuples()):
        target = caps / "subjects" / row.participant_id / row.session_id / "t1_linear"
        target.mkdir(parents=True)
        old = f"{row.participant_id}_{row.session_id}_T1w_space-{row.space}_desc-Crop_res-1x1x1_T1w.nii.gz"
        new = f"{row.participant_id}_{row.session_id}_space-{row.space}_desc-Crop_res-1x1x1_T1w.nii.gz"
        shutil.copy(row.path, target / (old if index % 2 else new))
    cohort = pd.read_csv(tmp_path / "bids_study" / "cohort.tsv", sep="\t")
    labels = write_labels(cohort.merge(made[["participant_id", "session_id"]]), tmp_path / "labels.tsv")

    from_caps = run_study(_config(tmp_path / "caps_study", {"caps": str(caps), "labels_tsv": str(labels)}))
    assert not (tmp_path / "caps_study" / "caps").exists()  # nothing preprocessed again
    columns = ["classifier", "condition", "run", "test_set", "balanced_accuracy", "auc", "n_train"]
    pd.testing.assert_frame_equal(from_caps["metrics"][columns], from_bids["metrics"][columns])
    for task in ("cnn/real/run-00", "sklearn-knn/real/run-00"):
        a = pd.read_csv(tmp_path / "bids_study" / "runs" / task / "predictions.tsv", sep="\t")
        b = pd.read_csv(tmp_path / "caps_study" / "runs" / task / "predictions.tsv", sep="\t")
        pd.testing.assert_frame_equal(a, b, rtol=1e-5)
    # `medaug predict` on the CAPS tree: its test subjects get the study's own probabilities, the rest are refused
    predicted = predict(tmp_path / "caps_study", caps, tmp_path / "predicted", labels_tsv=str(labels))
    table = predicted.predictions.set_index("participant_id")
    split = pd.read_csv(tmp_path / "caps_study" / "split" / "split.tsv", sep="\t").set_index("participant_id")["split"]
    assert (table["status"] == "predicted").eq(split[table.index] == "test").all()
    assert (table["qc_status"] == "not checked (CAPS input)").all()
    (model,) = predicted.models
    own = pd.read_csv(tmp_path / "caps_study" / "runs" / model / "predictions.tsv", sep="\t")
    own = own[own["test_set"] == "test"].set_index("participant_id")
    shown = table[table["status"] == "predicted"]
    pd.testing.assert_series_equal(shown["proba_AD"], own.loc[shown.index, "proba_AD"], rtol=1e-5, check_names=False)
    # the participants and sessions of its BIDS dataset as the cohort, and a CAPS tree lacking one
    # subject's image (Clinica failed on it): that image is left out and listed, the others used
    everything = tmp_path / "all_caps"
    shutil.copytree(tmp_path / "bids_study" / "caps" / "subjects", everything / "subjects")
    lost = cohort["participant_id"].iloc[0]
    shutil.rmtree(everything / "subjects" / lost)
    with_bids = run_study(_config(tmp_path / "caps_bids", {"caps": str(everything), "bids": str(study_cohort)}))
    assert sum(with_bids["n_images"].values()) == len(cohort) - 1  # Clinica's QC is Clinica's: nothing else left out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "caps_bids" / "cohort.tsv", sep="\t"), cohort)
    listed = pd.read_csv(tmp_path / "caps_bids" / "caps" / "excluded.tsv", sep="\t")
    assert listed["participant_id"].tolist() == [lost] and listed["reason"].str.contains("no t1-linear output").all()
    assert f"{lost} ses-M000 (no t1-linear output" in (tmp_path / "caps_bids" / "summary.md").read_text()
