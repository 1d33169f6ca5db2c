import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from medaug.data.cohort import load_cohort, load_image
from medaug.errors import InputDataError


def _dataset(root, participants=None, subjects=("01", "02"), sessions=("M00",), empty=True):
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.10.0"}))
    if participants is not None:
        participants.to_csv(root / "participants.tsv", sep="\t", index=False)
    for sub in subjects:
        for ses in sessions:
            anat = root / f"sub-{sub}" / f"ses-{ses}" / "anat"
            anat.mkdir(parents=True)
            path = anat / f"sub-{sub}_ses-{ses}_T1w.nii.gz"
            if empty:
                path.write_bytes(b"")
            else:
                nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), path)
    return root


def test_cohort_from_simulated_dataset_joins_participants_and_sessions(tiny_cohort):
    out, truth = tiny_cohort
    cohort = load_cohort(out)
    assert list(cohort.columns[:7]) == ["participant_id", "session_id", "diagnosis", "age", "sex", "site", "path"]
    assert len(cohort) == len(truth)
    merged = cohort.merge(truth, on=["participant_id", "session_id"], suffixes=("", "_truth"))
    # session-level ages (not age_bl) win
    np.testing.assert_allclose(merged["age"], merged["age_truth"], atol=0.01)
    assert (merged["diagnosis"] == merged["diagnosis_truth"]).all()
    assert (merged["sex"] == merged["sex_truth"]).all()


def test_placeholder_layout_indexes_and_loading_gives_empty_file_error(tmp_path):
    participants = pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "dx": ["CN", "AD"],
                                 "age_bl": [70, 80], "gender": ["female", "1"]})
    root = _dataset(tmp_path / "ds", participants, sessions=("M00", "M12"))
    cohort = load_cohort(root)
    assert cohort["session_id"].tolist() == ["ses-M00", "ses-M12"] * 2
    assert cohort["sex"].tolist() == ["F", "F", "M", "M"]
    assert cohort["diagnosis"].tolist() == ["CN", "CN", "AD", "AD"]
    with pytest.raises(InputDataError, match="0-byte"):
        load_image(cohort["path"][0])


def test_cohort_without_participants_table_has_empty_demographics(tmp_path):
    cohort = load_cohort(_dataset(tmp_path / "ds", None, sessions=("M000",)))
    assert len(cohort) == 2 and cohort["diagnosis"].isna().all()


@pytest.mark.parametrize("table, message", [
    (pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "age": [1, 2]}), "no diagnosis column .*participant_id, age"),
    (pd.DataFrame({"participant_id": ["sub-01", "sub-01"], "diagnosis": ["CN", "AD"]}), "sub-01 is listed more than once"),
    (pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "diagnosis": ["CN", "AD"], "sex": ["X", "M"]}), "unknown sex"),
])
def test_bad_participants_tables(tmp_path, table, message):
    root = _dataset(tmp_path / "ds", table)
    with pytest.raises(InputDataError, match=message):
        load_cohort(root)


def test_not_bids_and_no_t1w(tmp_path):
    with pytest.raises(InputDataError, match="not a BIDS dataset"):
        load_cohort(tmp_path)
    root = _dataset(tmp_path / "ds", None, subjects=())
    with pytest.raises(InputDataError, match="no T1w image"):
        load_cohort(root)


def test_load_image_reorients_to_ras_and_rejects_bad_files(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    las = np.diag([-2.0, 1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(data, las), tmp_path / "las.nii.gz")
    ras, affine = load_image(tmp_path / "las.nii.gz")
    assert ras.dtype == torch.float32
    np.testing.assert_array_equal(ras.numpy(), data[::-1])
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 3), np.float32), np.eye(4)), tmp_path / "four.nii.gz")
    with pytest.raises(InputDataError, match="3D T1w image is expected"):
        load_image(tmp_path / "four.nii.gz")
    bad = data.copy()
    bad[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(bad, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(InputDataError, match="NaN"):
        load_image(tmp_path / "nan.nii.gz")
    (tmp_path / "corrupt.nii.gz").write_bytes(gzip.compress(b"not a nifti header" * 30))
    with pytest.raises(InputDataError, match="cannot read"):
        load_image(tmp_path / "corrupt.nii.gz")


def test_index_cache_is_reused_and_a_stale_cache_is_reported(tmp_path):
    participants = pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "dx": ["CN", "AD"]})
    root = _dataset(tmp_path / "ds", participants)
    first = load_cohort(root, database_dir=tmp_path / "index")
    assert (tmp_path / "index").is_dir()
    pd.testing.assert_frame_equal(load_cohort(root, database_dir=tmp_path / "index"), first)
    Path(first["path"][1]).unlink()
    with pytest.raises(InputDataError, match="index cache .* is stale: .*sub-02_ses-M00_T1w.nii.gz no longer exists"):
        load_cohort(root, database_dir=tmp_path / "index")
    assert load_cohort(root)["participant_id"].tolist() == ["sub-01"]


def test_summary_counts_subjects_per_sex_not_images():
    import pandas as pd

    from medaug.data.cohort import summarize_table

    cohort = pd.DataFrame({"participant_id": ["sub-1", "sub-1", "sub-1", "sub-2"], "diagnosis": "AD",
                           "sex": ["F", "F", "F", "M"], "age": [70.0, 71.0, 72.0, 80.0]})
    row = summarize_table(cohort).iloc[0]
    assert (row["subjects"], row["images"], row["F"], row["M"]) == (2, 4, 1, 1)
