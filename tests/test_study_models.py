"""Saved study classifiers, the validation's choice, and `medaug predict` on new subjects."""

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import renamed_subject_copy
from medaug.cli import main
from medaug.errors import ConfigError, InputDataError, OutputExistsError
from medaug.simulation.example_cohort import ExampleCohortConfig, build_example_cohort
from medaug.study.saved_classifiers import (
    MODELS_FILE,
    ClassifierProvenance,
    load_classifier,
    model_table,
    save_classifier,
    select_classifiers,
)
from medaug.study.pipeline import run_study
from medaug.study.predict import predict
from medaug.study.search import CNNArchitecture
from medaug.study.tasks import study_tasks


def _provenance(condition="real", run=0, score=0.5):
    return ClassifierProvenance(classifier="cnn", condition=condition, run=run, seed=run, labels=("CN", "AD"),
                                positive="AD", input_shape=(1, 8, 8, 8), preprocessing={"enabled": False},
                                training_set="x", val_balanced_accuracy=score, epoch=1)


def test_saved_classifier_round_trips_and_refuses_unsafe_weights(tmp_path):
    architecture = CNNArchitecture(channels=(4, 8))
    torch.manual_seed(0)
    network = architecture.build((1, 8, 8, 8)).eval()
    folder = save_classifier(tmp_path / "model", network, architecture, _provenance())
    saved = load_classifier(folder)
    assert saved.provenance == _provenance() and saved.name == "cnn/real/run-00"
    x = torch.rand(3, 1, 8, 8, 8)
    assert torch.equal(saved.network()(x), network(x))
    torch.save({"weights": object()}, folder / "model.pt")  # a pickle weights_only refuses
    with pytest.raises(InputDataError, match="weights_only"):
        saved.network()


def test_the_validation_split_chooses_run_and_condition_never_the_test(tmp_path, study_config):
    config = study_config(tmp_path / "bids", tmp_path / "study", conditions=["real", {"kind": "classic", "options": {"copies": [1]}}], runs=2,
                          classifiers=["cnn"])
    tasks = study_tasks(config)
    validation = {("real", 0): 0.6, ("real", 1): 0.7, ("classic-x1", 0): 0.9, ("classic-x1", 1): 0.9}
    test = {("real", 0): 0.9, ("real", 1): 0.9, ("classic-x1", 0): 0.1, ("classic-x1", 1): 0.2}
    architecture = CNNArchitecture(channels=(4,))
    for task in tasks:
        key = (task.condition.name, task.run)
        save_classifier(tmp_path / "study" / task.folder / "model", architecture.build((1, 8, 8, 8)), architecture,
                        _provenance(*key, score=validation[key]))
    metrics = pd.DataFrame([{"classifier": "cnn", "condition": c, "run": r, "test_set": "test",
                             "balanced_accuracy": v} for (c, r), v in test.items()])
    table = model_table(tmp_path / "study", tasks, metrics)
    best = table[table["best_run"]].set_index("condition")["run"]
    assert best.to_dict() == {"real": 1, "classic-x1": 0}  # a tie goes to the earlier run
    assert set(table.loc[table["best_condition"], "condition"]) == {"classic-x1"}  # despite its test scores
    table.to_csv(tmp_path / "study" / MODELS_FILE, sep="\t", index=False)
    chosen = select_classifiers(tmp_path / "study")
    assert [m.name for m in chosen] == ["cnn/classic-x1/run-00"]
    assert [m.name for m in select_classifiers(tmp_path / "study", condition="real", ensemble=True)] == [
        "cnn/real/run-00", "cnn/real/run-01"]
    with pytest.raises(ConfigError, match="no cnn model of condition 'prior'"):
        select_classifiers(tmp_path / "study", condition="prior")


@pytest.fixture(scope="module")
def tiny_study(study_cohort, tmp_path_factory):
    """A finished 2-run study (CNN and k-NN, real and classic) with preprocessing disabled."""
    from medaug.study.config import StudyConfig

    out = tmp_path_factory.mktemp("models") / "study"
    config = StudyConfig.from_dict({
        "name": "tiny", "output": str(out), "seed": 0,
        "data": {"bids": str(study_cohort)}, "preprocessing": {"enabled": False, "size": [12, 14, 12]},
        "split": {"test_per_label": 1, "p_threshold": 0.0}, "conditions": ["real", "classic"],
        "classic_copies": [1], "classifiers": ["cnn", "sklearn-knn"],
        "classifier_training": {"epochs": 3, "batch_size": 4}, "runs": 2})
    return out, run_study(config)


@pytest.mark.slow
def test_predict_reproduces_the_study_and_refuses_what_it_trained_on(tiny_study, study_cohort, tmp_path):
    study, result = tiny_study
    models = result["models"]
    assert len(models) == 4 and set(models["classifier"]) == {"cnn"}  # k-NN is not saved (pickle)
    assert models["val_balanced_accuracy"].between(0, 1).all()
    # the study's own cohort: train / validation subjects refused, test subjects predicted exactly as in the study
    own = predict(study, study_cohort, tmp_path / "own")
    table = own.predictions
    split = pd.read_csv(study / "split" / "split.tsv", sep="\t").set_index("participant_id")["split"]
    refused = table[table["status"] == "refused"]
    assert set(split[refused["participant_id"]]) == {"train", "validation"}
    assert refused["reason"].str.contains("study's (train|validation) split").all()
    predicted = table[table["status"] == "predicted"]
    assert set(split[predicted["participant_id"]]) == {"test"}
    (name,) = own.models
    study_rows = pd.read_csv(study / "runs" / name.split("/", 1)[0] / name.split("/", 1)[1] / "predictions.tsv",
                             sep="\t")
    study_rows = study_rows[study_rows["test_set"] == "test"].set_index("participant_id")
    np.testing.assert_allclose(predicted.set_index("participant_id")["proba_AD"],
                               study_rows.loc[predicted["participant_id"], "proba_AD"], rtol=1e-5)
    assert (predicted.set_index("participant_id")["predicted_label"]
            == study_rows.loc[predicted["participant_id"], "predicted_label"]).all()
    # a training image under another subject id is refused by its voxels
    copy = renamed_subject_copy(study_cohort, split[split == "train"].index[0], "sub-NEW0001", tmp_path / "copy")
    again = predict(study, copy, tmp_path / "copied").predictions.set_index("participant_id")
    assert again.at["sub-NEW0001", "status"] == "refused"
    assert "identical to the study's training image" in again.at["sub-NEW0001", "reason"]


@pytest.mark.slow
def test_predict_on_a_new_cohort_writes_metrics_with_cis_and_the_cli_prints_them(tiny_study, study_cohort, tmp_path,
                                                                                 capsys):
    study, _ = tiny_study
    new = tmp_path / "new"
    build_example_cohort(new, ExampleCohortConfig(subjects_per_label=3, resolution_mm=6.0, seed=8, effect=3.0,
                                                  subject_prefix="NEW"))
    out = tmp_path / "predicted"
    assert main(["predict", str(study), str(new), "--out", str(out), "--ensemble"]) == 0
    printed = capsys.readouterr().out
    assert "6 image(s) predicted, 0 refused" in printed and "new subjects (6 subjects)" in printed
    table = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert len(table) == 6 and (table["status"] == "predicted").all()
    assert np.allclose(table[["proba_CN", "proba_AD"]].sum(axis=1), 1, atol=1e-5)
    assert table["models"].str.split().str.len().eq(2).all()  # both runs of the chosen condition
    metrics = pd.read_csv(out / "metrics.tsv", sep="\t")
    first = metrics.iloc[0]
    assert first["test_set"] == "new subjects" and first["n_CN"] == 3 and first["n_AD"] == 3
    assert first["ci_low"] <= first["balanced_accuracy"] <= first["ci_high"]
    # beside it, the same two models averaged on the study's test set, from the study's own predictions
    study_row = metrics.iloc[1]
    assert study_row["test_set"] == "study test set, 2 models" and study_row["subjects"] == 2
    runs = [pd.read_csv(study / "runs" / "cnn" / condition / f"run-{r:02d}" / "predictions.tsv", sep="\t")
            .query("test_set == 'test'") for condition in [table["models"][0].split()[0].split("/")[1]] for r in (0, 1)]
    mean_ad = (runs[0]["proba_AD"].to_numpy() + runs[1]["proba_AD"].to_numpy()) / 2
    truth = runs[0]["true_label"].to_numpy()
    assert study_row["auc"] == pytest.approx(float((mean_ad[truth == "AD"][:, None] > mean_ad[truth == "CN"]).mean()))
    # a rerun on another input into the same folder is refused; one without diagnoses leaves no metrics.tsv behind
    with pytest.raises(OutputExistsError, match="holds predictions of"):
        predict(study, study_cohort, out)
    for path in [new / "participants.tsv", *new.glob("sub-*/*_sessions.tsv")]:  # new subjects, no diagnoses
        listing = pd.read_csv(path, sep="\t")
        listing.drop(columns=[c for c in listing if "diagnosis" in c]).to_csv(path, sep="\t", index=False)
    again = predict(study, new, out, ensemble=True)
    assert again.metrics is None and not (out / "metrics.tsv").exists() and (again.predictions["true_label"] == "n/a").all()
    assert (out / "medaug.log").is_file()
    # the output is never inside the study or the input; a foreign folder is refused
    with pytest.raises(SystemExit) as stopped:  # a configuration error: exit code 2, one line
        main(["predict", str(study), str(new), "--out", str(study / "p")])
    assert stopped.value.code == 2 and "inside" in capsys.readouterr().err
    assert not (study / "p").exists()


def test_bad_study_folders_inputs_and_options_are_refused_by_name(tmp_path, capsys):
    from medaug.study.interpret import interpret_study

    (tmp_path / "input").mkdir()
    with pytest.raises(InputDataError, match="not found: give a BIDS dataset or a CAPS folder"):
        predict(tmp_path, tmp_path / "missing", tmp_path / "out")
    with pytest.raises(InputDataError, match="is not a study folder .no config.yaml"):
        predict(tmp_path / "input", tmp_path / "input", tmp_path / "out")
    with pytest.raises(InputDataError, match="is not a study folder"):
        interpret_study(tmp_path / "input")
    for argv in (["interpret", str(tmp_path), "--method", "lime"],
                 ["predict", str(tmp_path), str(tmp_path / "input"), "--out", str(tmp_path / "o"), "--jobs", "0"]):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2
    assert "invalid choice: 'lime'" in capsys.readouterr().err
    # a study whose classifiers were all scikit-learn: nothing saved, and the message says why
    pd.DataFrame(columns=["classifier", "condition", "run", "val_balanced_accuracy", "test_balanced_accuracy",
                          "epoch", "best_run", "best_condition", "path"]).to_csv(tmp_path / MODELS_FILE, sep="\t",
                                                                                 index=False)
    with pytest.raises(InputDataError, match="only CNN classifiers are saved"):
        select_classifiers(tmp_path)
    # a hand-edited provenance names its file
    architecture = CNNArchitecture(channels=(4,))
    folder = save_classifier(tmp_path / "model", architecture.build((1, 8, 8, 8)), architecture, _provenance())
    (folder / "provenance.json").write_text('{"classifier": "cnn"}')
    with pytest.raises(InputDataError, match=r"provenance.json is not a classifier provenance .*missing"):
        load_classifier(folder)
