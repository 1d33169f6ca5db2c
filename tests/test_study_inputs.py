"""Study inputs that used to give silent wrong results: QC exclusions drawn into the split, a
constant image in a training set (issue: reliability, item 6)."""

import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import medaug.study.data as study_data
from medaug.errors import InputDataError
from medaug.study.data import prepare_data


def test_split_is_drawn_after_qc_exclusions(study_cohort, study_config, tmp_path, monkeypatch):
    excluded = {"sub-SIM0001", "sub-SIM0002", "sub-SIM0003"}  # CN, CN, AD
    original = study_data._preprocessed

    def failing_qc(config, rows, bids, caps):  # as if t1-linear failed or flagged three subjects' images
        kept = original(config, rows, bids, caps)
        return kept[~kept["participant_id"].isin(excluded)]

    cohort = pd.read_csv(next(study_cohort.glob("participants.tsv")), sep="\t")
    assert excluded <= set(cohort["participant_id"])
    monkeypatch.setattr(study_data, "_preprocessed", failing_qc)
    config = study_config(study_cohort, tmp_path / "run", split={"test_per_label": 1, "p_threshold": 0.0})
    data = prepare_data(config, tmp_path / "run")
    split = pd.read_csv(tmp_path / "run/split/split.tsv", sep="\t")
    assert not excluded & set(split["participant_id"]) and len(split) == len(cohort) - 3
    assert data.test.rows["diagnosis"].value_counts().to_dict() == {"AD": 1, "CN": 1}  # the test slots hold
    used = set(data.train.rows["participant_id"]) | set(data.validation.rows["participant_id"])
    assert not excluded & used
    # the recorded split is checked against the usable cohort: restoring an image is not silently ignored
    monkeypatch.setattr(study_data, "_preprocessed", original)
    with pytest.raises(Exception, match=r"usable cohort changed .* 3 subject\(s\) added \(sub-SIM0001, sub-SIM0002, sub-SIM0003"):
        prepare_data(config, tmp_path / "run")


def test_an_all_zero_image_is_refused_by_name(study_cohort, study_config, tmp_path):
    bids = tmp_path / "bids"
    shutil.copytree(study_cohort, bids)
    image_path = sorted(bids.glob("sub-SIM0004/**/*_T1w.nii.gz"))[0]
    image = nib.load(image_path)
    nib.save(nib.Nifti1Image(np.zeros(image.shape, np.float32), image.affine), image_path)
    with pytest.raises(InputDataError, match=rf"{image_path.name}.*constant image \(all voxels 0\)"):
        prepare_data(study_config(bids, tmp_path / "run"), tmp_path / "run")
