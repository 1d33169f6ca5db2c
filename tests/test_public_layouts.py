"""``medaug cohort`` on the layouts of public BIDS datasets without diagnoses (bids-examples)."""

import pandas as pd
import pytest

from medaug.cli import main

LAYOUTS = {  # name → (participants.tsv columns, T1w paths relative to the dataset); 0-byte images as in bids-examples
    "ds114": ("participant_id\tsex\tage", ["sub-01/ses-test/anat/sub-01_ses-test_T1w.nii.gz",
                                           "sub-01/ses-retest/anat/sub-01_ses-retest_T1w.nii.gz",
                                           "sub-02/ses-test/anat/sub-02_ses-test_T1w.nii.gz"]),
    "7t_trt": ("participant_id\tsex\tage", ["sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz",
                                            "sub-01/ses-1/anat/sub-01_ses-1_T1map.nii.gz",
                                            "sub-02/ses-1/anat/sub-02_ses-1_T1w.nii.gz"]),
    "ds000117": ("participant_id\tage\tsex", ["sub-01/ses-mri/anat/sub-01_ses-mri_acq-mprage_run-1_T1w.nii.gz",
                                              "sub-01/ses-mri/anat/sub-01_ses-mri_acq-mprage_run-2_T1w.nii.gz",
                                              "sub-02/ses-mri/anat/sub-02_ses-mri_acq-mprage_run-1_T1w.nii.gz"]),
    "ds001": ("participant_id\tsex\tage", ["sub-01/anat/sub-01_T1w.nii.gz", "sub-02/anat/sub-02_T1w.nii.gz",
                                           "sub-03/anat/sub-03_T1w.nii.gz"]),
    "synthetic": ("participant_id\tage\tsex\thandedness", ["sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz",
                                                          "sub-01/ses-02/anat/sub-01_ses-02_T1w.nii.gz",
                                                          "sub-02/ses-01/anat/sub-02_ses-01_T1w.nii.gz"]),
}


def _layout(root, name):
    header, images = LAYOUTS[name]
    dataset = root / name
    dataset.mkdir()
    (dataset / "dataset_description.json").write_text('{"Name": "%s", "BIDSVersion": "1.8.0"}' % name)
    subjects = sorted({path.split("/")[0] for path in images})
    values = {"sex": "F", "age": "30", "handedness": "R"}
    rows = ["\t".join([subject, *(values[column] for column in header.split("\t")[1:])]) for subject in subjects]
    (dataset / "participants.tsv").write_text("\n".join([header, *rows]) + "\n")
    for path in images:
        (dataset / path).parent.mkdir(parents=True, exist_ok=True)
        (dataset / path).write_bytes(b"")
    return dataset


@pytest.mark.parametrize("name, images, sessions", [("ds114", 3, {"ses-test", "ses-retest"}), ("7t_trt", 2, {"ses-1"}),
                                                    ("ds000117", 2, {"ses-mri"}), ("ds001", 3, {"n/a"}),
                                                    ("synthetic", 3, {"ses-01", "ses-02"})])
def test_datasets_without_diagnoses_are_indexed_and_said_so(tmp_path, capsys, name, images, sessions):
    dataset = _layout(tmp_path, name)
    out = tmp_path / f"{name}.tsv"
    assert main(["cohort", str(dataset), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{dataset} records no diagnosis" in printed and "--labels and --stable-diagnosis need one" in printed
    table = pd.read_csv(out, sep="\t", keep_default_na=False)
    assert len(table) == images and set(table["session_id"]) == sessions  # one image per session: run-1 kept
    assert (table["diagnosis"] == "n/a").all() and (table["age"] == 30).all() and (table["sex"] == "F").all()
    if name == "ds000117":
        assert table["path"].str.endswith("run-1_T1w.nii.gz").all()
    # a labels TSV needs diagnoses: refused, nothing written
    assert main(["cohort", str(dataset), "-o", str(tmp_path / "x.tsv"), "--labels", str(tmp_path / "labels.tsv")]) == 2
    assert "has no diagnosis column" in capsys.readouterr().err
    assert not (tmp_path / "labels.tsv").exists() and not (tmp_path / "x.tsv").exists()
