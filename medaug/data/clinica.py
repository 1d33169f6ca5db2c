"""Clinica / ClinicaDL compatibility: labels TSVs and CAPS trees of ``t1-linear`` outputs.

Labels TSV: ``participant_id, session_id, diagnosis, age, sex`` (one row per image).
CAPS ``t1-linear``: ``subjects/sub-X/ses-Y/t1_linear/`` holding
``sub-X_ses-Y_space-<tpl>_desc-Crop_res-1x1x1_T1w.nii.gz`` (Clinica ≥ 0.4 naming) or
``sub-X_ses-Y_T1w_space-<tpl>_desc-Crop_res-1x1x1_T1w.nii.gz`` (older naming, which kept the
source suffix); without ``desc-Crop`` the image is the uncropped registration. Images of a
session-less dataset (session_id ``n/a``) have no ``ses-`` level or entity:
``subjects/sub-X/t1_linear/sub-X_space-<tpl>_desc-Crop_res-1x1x1_T1w.nii.gz``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nibabel as nib
import pandas as pd

from medaug.data.cohort import NO_SESSION, normalise_diagnoses, standard_columns
from medaug.errors import InputDataError
from medaug.io import read_table, write_tsv
from medaug.preprocessing import CLINICA_CROP_SHAPE

LABEL_COLUMNS = ["participant_id", "session_id", "diagnosis", "age", "sex"]
CLINICA_TEMPLATE = "MNI152NLin2009cSym"
_CAPS_T1_LINEAR = re.compile(
    r"^(?P<participant_id>sub-[A-Za-z0-9]+)(?:_(?P<session_id>ses-[A-Za-z0-9]+))?(?P<old>_T1w)?"
    r"_space-(?P<space>[A-Za-z0-9]+)(?P<crop>_desc-Crop)?_res-(?P<res>[0-9x]+)_T1w\.nii(\.gz)?$")


def _first_repeated_image(table: pd.DataFrame) -> pd.Series | None:
    """The first row whose (participant_id, session_id) already appeared, if any."""
    twice = table.duplicated(["participant_id", "session_id"])
    return table[twice].iloc[0] if twice.any() else None


def _session(session_id: str | None) -> str | None:
    """The ``ses-`` label of a session_id, or None for a session-less image (None, NaN, "" or "n/a")."""
    if session_id is None or pd.isna(session_id) or str(session_id).strip() in ("", NO_SESSION):
        return None
    return str(session_id)


def _t1_linear_dir(caps_dir: Path, participant_id: str, session_id: str | None) -> Path:
    """``subjects/sub-X/[ses-Y/]t1_linear`` of one image."""
    session = _session(session_id)
    return caps_dir / "subjects" / participant_id / (session or "") / "t1_linear"


def read_labels(path: str | os.PathLike) -> pd.DataFrame:
    """A ClinicaDL labels TSV with standard values (sex M/F, numeric age); extra columns are kept."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"labels table {path} not found")
    table = read_table(path, f"a labels TSV has {', '.join(LABEL_COLUMNS)}", dtype=str, na_values=["n/a", "NA", ""],
                       keep_default_na=False)
    missing = [c for c in ("participant_id", "session_id", "diagnosis") if c not in table]
    if missing:
        raise InputDataError(f"{path} lacks column(s) {', '.join(missing)} (columns: {', '.join(table.columns)}); "
                             f"a labels TSV has {', '.join(LABEL_COLUMNS)}")
    table["session_id"] = table["session_id"].fillna(NO_SESSION)  # session-less images join as "n/a"
    row = _first_repeated_image(table)
    if row is not None:
        raise InputDataError(f"{path}: {row['participant_id']} {row['session_id']} is listed more than once; "
                             "keep one row per image")
    standard = standard_columns(table, path)
    standard["diagnosis"] = normalise_diagnoses(standard["diagnosis"])
    table = table.drop(columns=[c for c in table.columns if c.lower() in standard.columns])
    return pd.concat([table, standard], axis=1)


def write_labels(cohort: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the ClinicaDL labels columns of a cohort table (atomic; missing values as ``n/a``)."""
    missing = [c for c in LABEL_COLUMNS if c not in cohort]
    if missing:
        raise InputDataError(f"cannot write labels to {path}: the table lacks {', '.join(missing)}")
    return write_tsv(path, cohort[LABEL_COLUMNS].sort_values(["participant_id", "session_id"]))


def caps_t1_linear_path(caps_dir: str | os.PathLike, participant_id: str, session_id: str | None,
                        space: str = CLINICA_TEMPLATE, cropped: bool = True, resolution: str = "1x1x1") -> Path:
    """Where Clinica (current naming) puts the ``t1-linear`` image of one session.

    A session_id of None, "" or "n/a" names a session-less image (no ``ses-`` folder or entity).
    ``resolution`` other than ``1x1x1`` names medaug's resized copies (for example ``84x104x89``
    voxels), which Clinica does not write.
    """
    session = _session(session_id)
    entities = f"{participant_id}_{session}" if session else participant_id
    crop = "_desc-Crop" if cropped else ""
    name = f"{entities}_space-{space}{crop}_res-{resolution}_T1w.nii.gz"
    return _t1_linear_dir(Path(caps_dir), participant_id, session) / name


def _check_crop_grid(paths: pd.Series) -> None:
    """Refuse ``desc-Crop`` images that are not on t1-linear's 169×208×179 crop grid (headers only):
    resizing them would give a classifier or a generator other anatomy than it expects."""
    shapes = {}
    for path in paths:
        try:
            shapes[path] = nib.load(path).shape[:3]
        except Exception as error:  # noqa: BLE001 (nibabel raises many types for corrupt files)
            raise InputDataError(f"cannot read {path} as NIfTI ({' '.join(str(error).split())}); rerun t1-linear on "
                                 "it or remove it") from None
    off = [f"{Path(path).name} ({'×'.join(map(str, shape))})" for path, shape in shapes.items()
           if shape != CLINICA_CROP_SHAPE]
    if off:
        raise InputDataError(f"{len(off)} t1-linear crop image(s) are not on the {'×'.join(map(str, CLINICA_CROP_SHAPE))} "
                             f"crop grid: {', '.join(off[:3])}{' …' if len(off) > 3 else ''}; rerun t1-linear on "
                             "them (`clinica run t1-linear` or `medaug preprocess`) or remove them")


def read_caps_t1_linear(caps_dir: str | os.PathLike, labels: pd.DataFrame | None = None,
                        cropped: bool = True, resolution: str = "1x1x1") -> pd.DataFrame:
    """Index ``t1-linear`` images of a CAPS tree: participant_id, session_id, space, naming, path.

    Session-less images (``subjects/sub-X/t1_linear/``) get session_id ``n/a``. With ``labels`` (a
    labels table), rows are joined on participant and session; a labelled image missing from the
    CAPS tree is an error naming it.
    """
    caps_dir = Path(caps_dir)
    if not (caps_dir / "subjects").is_dir():
        raise InputDataError(f"{caps_dir} is not a CAPS folder (no subjects/ inside); "
                             "point to the output folder of `clinica run t1-linear` or `medaug preprocess`")
    rows = []
    subjects = caps_dir / "subjects"
    paths = [*subjects.glob("sub-*/ses-*/t1_linear/*_T1w.nii*"), *subjects.glob("sub-*/t1_linear/*_T1w.nii*")]
    for path in sorted(paths):
        match = _CAPS_T1_LINEAR.match(path.name)
        if match is None or bool(match["crop"]) != cropped or match["res"] != resolution:
            continue
        folder = _t1_linear_dir(caps_dir, match["participant_id"], match["session_id"])
        if path.parent != folder:
            raise InputDataError(f"{path} is filed under the wrong subject or session folder; move it to {folder}")
        rows.append({"participant_id": match["participant_id"], "session_id": match["session_id"] or NO_SESSION,
                     "space": match["space"], "naming": "old" if match["old"] else "new", "path": str(path)})
    images = pd.DataFrame(rows, columns=["participant_id", "session_id", "space", "naming", "path"])
    if images.empty:
        kind = "cropped (desc-Crop)" if cropped else "uncropped"
        raise InputDataError(f"no {kind} res-{resolution} t1-linear image found under "
                             f"{caps_dir}/subjects/sub-*/[ses-*/]t1_linear/")
    row = _first_repeated_image(images)
    if row is not None:
        raise InputDataError(f"{row['participant_id']} {row['session_id']} has several t1-linear images in "
                             f"{caps_dir} (old and new naming, or several templates); remove all but one")
    if cropped and resolution == "1x1x1":
        _check_crop_grid(images["path"])
    if labels is None:
        return images
    merged = labels.merge(images, on=["participant_id", "session_id"], how="left", validate="one_to_one")
    absent = merged["path"].isna()
    if absent.any():
        row = merged[absent].iloc[0]
        raise InputDataError(f"{absent.sum()} labelled image(s) have no t1-linear output in {caps_dir}, "
                             f"first {row['participant_id']} {row['session_id']}; preprocess them or drop the rows")
    return merged
