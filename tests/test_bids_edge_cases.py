"""BIDS datasets as users have them: no sessions, odd parent folders, bad labels, messy tables."""

import json
import logging

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medaug.data.clinica import (
    caps_t1_linear_path,
    read_caps_t1_linear,
    read_labels,
    write_labels,
)
from medaug.data.cohort import load_cohort, normalise_diagnoses, read_sessions
from medaug.data.selection import match_labels
from medaug.errors import ConfigError, InputDataError
from medaug.preprocessing import CLINICA_CROP_SHAPE

SPACE = "MNI152NLin2009cSym"


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(CLINICA_CROP_SHAPE, np.uint8), np.eye(4)), path)  # a t1-linear crop's grid
    return path


def _bids(root, images, participants=None, sessions=None):
    """A tiny dataset: ``images`` maps a subject label to its session labels (empty: no ses- level);
    ``participants`` is a participants table, ``sessions`` maps a subject label to its sessions table."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.10.0"}))
    if participants is not None:
        pd.DataFrame(participants).to_csv(root / "participants.tsv", sep="\t", index=False)
    for sub, labels in images.items():
        for ses in labels or [None]:
            folder = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "anat"
            entities = f"sub-{sub}_ses-{ses}" if ses else f"sub-{sub}"
            _image(folder / f"{entities}_T1w.nii.gz")
    for sub, table in (sessions or {}).items():
        pd.DataFrame(table).to_csv(root / f"sub-{sub}" / f"sub-{sub}_sessions.tsv", sep="\t", index=False)
    return root


MIXED = {"01": [], "02": ["M00", "M12"], "03": []}
MIXED_PARTICIPANTS = {"participant_id": ["sub-01", "sub-02", "sub-03"], "diagnosis": ["CN", "AD", "AD"],
                      "sex": ["F", "M", "F"]}


# 1. session-less datasets -------------------------------------------------------------------------

def test_session_less_caps_path_has_no_session_level_or_entity(tmp_path):
    caps = tmp_path / "caps"
    expected = caps / "subjects" / "sub-X" / "t1_linear" / f"sub-X_space-{SPACE}_desc-Crop_res-1x1x1_T1w.nii.gz"
    for session in (None, "", "n/a", np.nan):
        assert caps_t1_linear_path(caps, "sub-X", session) == expected
    assert caps_t1_linear_path(caps, "sub-X", "ses-M00").parent == caps / "subjects" / "sub-X" / "ses-M00" / "t1_linear"


def test_session_less_caps_image_is_read_back_and_joins_with_n_a_labels(tmp_path):
    caps = tmp_path / "caps"
    path = _image(caps_t1_linear_path(caps, "sub-01", "n/a"))
    images = read_caps_t1_linear(caps)
    assert images[["participant_id", "session_id", "naming", "path"]].values.tolist() == \
        [["sub-01", "n/a", "new", str(path)]]
    labels = pd.DataFrame({"participant_id": ["sub-01"], "session_id": ["n/a"], "diagnosis": ["CN"]})
    joined = read_caps_t1_linear(caps, labels)
    assert joined[["diagnosis", "path"]].values.tolist() == [["CN", str(path)]]


def test_mixed_dataset_cohort_labels_and_caps_tree_line_up(tmp_path):
    cohort = load_cohort(_bids(tmp_path / "bids", MIXED, MIXED_PARTICIPANTS))
    assert cohort[["participant_id", "session_id", "diagnosis"]].values.tolist() == [
        ["sub-01", "n/a", "CN"], ["sub-02", "ses-M00", "AD"], ["sub-02", "ses-M12", "AD"], ["sub-03", "n/a", "AD"]]
    caps = tmp_path / "caps"
    written = [str(_image(caps_t1_linear_path(caps, row.participant_id, row.session_id)))
               for row in cohort.itertuples()]
    assert "/subjects/sub-01/t1_linear/sub-01_space-" in written[0]
    # the labels TSV writes n/a; reading it back keeps "n/a" so that it joins with the CAPS rows
    labels = read_labels(write_labels(cohort, tmp_path / "labels.tsv"))
    assert labels["session_id"].tolist() == ["n/a", "ses-M00", "ses-M12", "n/a"]
    joined = read_caps_t1_linear(caps, labels)
    assert joined["path"].tolist() == written
    assert joined["diagnosis"].tolist() == ["CN", "AD", "AD", "AD"]


def test_caps_image_in_the_wrong_session_folder_is_refused(tmp_path):
    caps = tmp_path / "caps"
    session_less = caps_t1_linear_path(caps, "sub-01", None).name
    _image(caps / "subjects" / "sub-01" / "ses-M00" / "t1_linear" / session_less)
    with pytest.raises(InputDataError, match=f"{session_less} is filed under the wrong .* move it to "
                                             f".*subjects/sub-01/t1_linear"):
        read_caps_t1_linear(caps)


# 2. datatype- or entity-named folders above the dataset -------------------------------------------

@pytest.mark.parametrize("parent", ["perf/study/bids", "func/bids", "sub-old/ses-x/bids"])
def test_folders_above_the_dataset_do_not_become_entities(tmp_path, parent):
    cohort = load_cohort(_bids(tmp_path / parent, MIXED, MIXED_PARTICIPANTS))
    assert cohort["participant_id"].tolist() == ["sub-01", "sub-02", "sub-02", "sub-03"]
    assert cohort["session_id"].tolist() == ["n/a", "ses-M00", "ses-M12", "n/a"]
    assert cohort["sex"].tolist() == ["F", "M", "M", "F"]
    assert not [c for c in cohort.columns if c.startswith("bids_")]


def test_only_anat_images_are_indexed_and_acquisition_filters_on_the_file_name(tmp_path):
    root = _bids(tmp_path / "acq-x" / "bids", {"01": ["M00"], "02": ["M00"]})
    _image(root / "sub-01" / "ses-M00" / "func" / "sub-01_ses-M00_T1w.nii.gz")  # misfiled: not anat
    _image(root / "sub-02" / "ses-M00" / "anat" / "sub-02_ses-M00_acq-fast_T1w.nii.gz")
    cohort = load_cohort(root)
    assert cohort["path"].str.contains("/anat/").all() and len(cohort) == 2
    fast = load_cohort(root, acquisition="fast")
    assert fast[["participant_id", "bids_acquisition"]].values.tolist() == [["sub-02", "fast"]]


# 3. invalid subject / session labels --------------------------------------------------------------

def test_subject_folder_with_a_space_is_refused(tmp_path):
    root = _bids(tmp_path / "bids", {"01": []})
    (root / "sub-SIM 0001" / "anat").mkdir(parents=True)
    with pytest.raises(InputDataError, match=r"folder .*sub-SIM 0001 has the label 'SIM 0001'.*rename it"
                                             r".*alphanumeric label such as sub-SIM0001"):
        load_cohort(root)


def test_session_folder_with_an_invalid_label_is_refused(tmp_path):
    root = _bids(tmp_path / "bids", {"01": ["M00"]})
    (root / "sub-01" / "ses-M_12" / "anat").mkdir(parents=True)
    with pytest.raises(InputDataError, match=r"sub-01/ses-M_12 has the label 'M_12'.*such as ses-M12"):
        load_cohort(root)


# 4. diagnosis spellings ---------------------------------------------------------------------------

def test_normalise_diagnoses_strips_and_unifies_letter_case(caplog):
    diagnosis = pd.Series(["ad", "AD ", " AD", "CN", None, "  ", "sMCI", "pMCI", "cn", "Cn"])
    with caplog.at_level(logging.WARNING, logger="medaug.data.cohort"):
        out = normalise_diagnoses(diagnosis)
    assert out.tolist()[:4] == ["AD", "AD", "AD", "CN"] and out[[4, 5]].isna().all()
    assert out.tolist()[6:] == ["sMCI", "pMCI", "CN", "CN"]  # a three-way tie goes to the upper-case one
    assert "'AD' (2), 'ad' (1)" in caplog.text and "using 'AD'" in caplog.text
    assert "using 'CN'" in caplog.text and "MCI" not in caplog.text


def test_most_frequent_spelling_wins_over_upper_case():
    assert normalise_diagnoses(pd.Series(["Ad", "Ad", "AD"])).tolist() == ["Ad"] * 3


def test_load_cohort_and_read_labels_unify_diagnosis_spellings(tmp_path, caplog):
    participants = {"participant_id": ["sub-01", "sub-02", "sub-03"], "diagnosis": ["ad", "AD ", "CN"]}
    sessions = {"03": {"session_id": ["ses-M00", "ses-M12"], "diagnosis": ["cn", " CN"]}}  # session values win
    root = _bids(tmp_path / "bids", {"01": ["M00"], "02": ["M00"], "03": ["M00", "M12"]}, participants, sessions)
    with caplog.at_level(logging.WARNING, logger="medaug.data.cohort"):
        cohort = load_cohort(root)
    assert cohort["diagnosis"].tolist() == ["AD", "AD", "CN", "CN"]
    assert "'AD' (1), 'ad' (1)" in caplog.text and "'CN' (1), 'cn' (1)" in caplog.text  # counts are images
    (tmp_path / "labels.tsv").write_text("participant_id\tsession_id\tdiagnosis\n"
                                         "sub-01\tses-M00\t pMCI\nsub-02\tses-M00\tsMCI\nsub-03\tses-M00\tsmci\n")
    assert read_labels(tmp_path / "labels.tsv")["diagnosis"].tolist() == ["pMCI", "sMCI", "sMCI"]


def test_match_labels_uses_the_configured_spellings(caplog):
    diagnosis = pd.Series(["cn", "AD", "ad", None, "smci", "pMCI", "MCI"])
    with caplog.at_level(logging.WARNING, logger="medaug.data.selection"):
        out = match_labels(diagnosis, ["CN", "AD", "sMCI", "pMCI"])
    assert out.tolist()[:3] == ["CN", "AD", "AD"] and pd.isna(out[3])
    assert out.tolist()[4:] == ["sMCI", "pMCI", "MCI"]
    assert [r.getMessage() for r in caplog.records] == [
        "diagnosis 'ad' (1 image(s)) read as the configured label 'AD'",
        "diagnosis 'cn' (1 image(s)) read as the configured label 'CN'",
        "diagnosis 'smci' (1 image(s)) read as the configured label 'sMCI'"]
    with pytest.raises(ConfigError, match="differ only in letter case"):
        match_labels(diagnosis, ["CN", "cn"])


# 5. subjects missing from participants.tsv --------------------------------------------------------

def test_subjects_missing_from_participants_are_named(tmp_path, caplog):
    participants = {"participant_id": ["sub-01"], "diagnosis": ["CN"], "age": [70]}
    sessions = {"02": {"session_id": ["ses-M00"], "diagnosis": ["AD"]}}
    root = _bids(tmp_path / "bids", {"01": ["M00"], "02": ["M00"], "03": ["M00"]}, participants, sessions)
    with caplog.at_level(logging.WARNING, logger="medaug.data.cohort"):
        cohort = load_cohort(root)
    assert cohort["diagnosis"].tolist()[:2] == ["CN", "AD"] and pd.isna(cohort["diagnosis"][2])
    assert cohort["age"].isna().tolist() == [False, True, True]
    message = next(r.getMessage() for r in caplog.records if "not in" in r.getMessage())
    assert f"2 imaged subject(s) are not in {root / 'participants.tsv'} (first: sub-02, sub-03)" in message
    assert "1 of them (sub-03) have no diagnosis in their sub-*_sessions.tsv either" in message


def test_no_warning_when_every_subject_is_listed(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="medaug.data.cohort"):
        load_cohort(_bids(tmp_path / "bids", MIXED, MIXED_PARTICIPANTS))
    assert [r for r in caplog.records if r.name.startswith("medaug")] == []


# 6. duplicate sessions ----------------------------------------------------------------------------

def test_duplicate_session_rows_are_refused(tmp_path):
    sessions = {"01": {"session_id": ["ses-M00", "ses-M12", "ses-M00"], "diagnosis": ["CN", "CN", "AD"]}}
    root = _bids(tmp_path / "bids", {"01": ["M00", "M12"]}, sessions=sessions)
    with pytest.raises(InputDataError, match=r"sub-01_sessions.tsv: session ses-M00 is listed more than once"):
        read_sessions(root / "sub-01")
    with pytest.raises(InputDataError, match=r"sub-01_sessions.tsv: session ses-M00"):
        load_cohort(root)
