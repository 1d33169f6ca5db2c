import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medaug.data.clinica import caps_t1_linear_path, read_caps_t1_linear, read_labels, write_labels
from medaug.data.cohort import load_cohort
from medaug.errors import InputDataError
from medaug.preprocessing import CLINICA_CROP_SHAPE


def _caps_image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(CLINICA_CROP_SHAPE, np.uint8), np.eye(4)), path)  # the crop grid: read
    return path


def test_labels_round_trip_from_a_bids_cohort(tiny_cohort, tmp_path):
    cohort = load_cohort(tiny_cohort[0])
    write_labels(cohort, tmp_path / "labels.tsv")
    assert (tmp_path / "labels.tsv").read_text().splitlines()[0] == "participant_id\tsession_id\tdiagnosis\tage\tsex"
    labels = read_labels(tmp_path / "labels.tsv")
    expected = cohort[["participant_id", "session_id", "diagnosis", "age", "sex"]]
    pd.testing.assert_frame_equal(labels[expected.columns], expected.reset_index(drop=True), check_dtype=False)


def test_labels_map_sex_codes_and_reject_bad_tables(tmp_path):
    (tmp_path / "ok.tsv").write_text("participant_id\tsession_id\tdiagnosis\tage\tsex\tmmse\n"
                                     "sub-01\tses-M00\tAD\t71.5\tfemale\t22\nsub-02\tses-M00\tCN\tn/a\t1\t29\n")
    labels = read_labels(tmp_path / "ok.tsv")
    assert labels["sex"].tolist() == ["F", "M"] and labels["mmse"].tolist() == ["22", "29"]
    assert labels["age"].iloc[0] == 71.5 and np.isnan(labels["age"].iloc[1])
    (tmp_path / "nodx.tsv").write_text("participant_id\tsession_id\tage\nsub-01\tses-M00\t70\n")
    with pytest.raises(InputDataError, match=r"lacks column\(s\) diagnosis .*columns: participant_id, session_id, age"):
        read_labels(tmp_path / "nodx.tsv")
    (tmp_path / "twice.tsv").write_text("participant_id\tsession_id\tdiagnosis\nsub-01\tses-M00\tAD\n"
                                        "sub-01\tses-M00\tCN\n")
    with pytest.raises(InputDataError, match="sub-01 ses-M00 is listed more than once"):
        read_labels(tmp_path / "twice.tsv")
    with pytest.raises(InputDataError, match="not found"):
        read_labels(tmp_path / "absent.tsv")


def test_caps_reader_accepts_old_and_new_clinica_naming(tmp_path):
    caps = tmp_path / "caps"
    new = _caps_image(caps_t1_linear_path(caps, "sub-01", "ses-M000"))
    assert new.name == "sub-01_ses-M000_space-MNI152NLin2009cSym_desc-Crop_res-1x1x1_T1w.nii.gz"
    old = _caps_image(caps / "subjects/sub-02/ses-M00/t1_linear/"
                      "sub-02_ses-M00_T1w_space-MNI152NLin2009cSym_desc-Crop_res-1x1x1_T1w.nii.gz")
    _caps_image(caps_t1_linear_path(caps, "sub-01", "ses-M000", cropped=False))  # uncropped: not listed
    images = read_caps_t1_linear(caps)
    assert images["path"].tolist() == [str(new), str(old)]
    assert images["naming"].tolist() == ["new", "old"]
    assert set(images["space"]) == {"MNI152NLin2009cSym"}
    assert len(read_caps_t1_linear(caps, cropped=False)) == 1
    labels = pd.DataFrame({"participant_id": ["sub-01", "sub-02"], "session_id": ["ses-M000", "ses-M00"],
                           "diagnosis": ["CN", "AD"]})
    joined = read_caps_t1_linear(caps, labels)
    assert joined["diagnosis"].tolist() == ["CN", "AD"] and joined["path"].notna().all()


def test_caps_reader_errors_name_the_problem(tmp_path):
    with pytest.raises(InputDataError, match="not a CAPS folder"):
        read_caps_t1_linear(tmp_path)
    caps = tmp_path / "caps"
    (caps / "subjects").mkdir(parents=True)
    with pytest.raises(InputDataError, match="no cropped .* image found"):
        read_caps_t1_linear(caps)
    _caps_image(caps_t1_linear_path(caps, "sub-01", "ses-M000"))
    labels = pd.DataFrame({"participant_id": ["sub-01", "sub-09"], "session_id": ["ses-M000", "ses-M000"],
                           "diagnosis": ["CN", "AD"]})
    with pytest.raises(InputDataError, match="first sub-09 ses-M000"):
        read_caps_t1_linear(caps, labels)
    _caps_image(caps_t1_linear_path(caps, "sub-01", "ses-M000", space="MNI152NLin2009aAsym"))
    with pytest.raises(InputDataError, match="sub-01 ses-M000 has several t1-linear images"):
        read_caps_t1_linear(caps)
