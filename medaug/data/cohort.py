"""Cohort tables from BIDS datasets: one row per T1w image with diagnosis and demographics.

Indexing uses pybids' ``BIDSLayout`` (optionally with a persistent index database); entities are
parsed from paths relative to the dataset root, so folders above it (``/data/func/bids``) do not
leak into them. Subject and session folders must have alphanumeric labels. Clinica's converters
write ``participants.tsv`` with ``diagnosis_bl`` / ``age_bl`` and per-subject ``sub-*_sessions.tsv``
with ``diagnosis`` / ``age``; other common spellings are mapped too, and a session-level value wins
over the participant-level one. Diagnoses are stripped of surrounding whitespace and spellings that
differ only in letter case are unified. Images of a dataset without ``ses-`` folders get session_id
``n/a``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from medaug.errors import InputDataError
from medaug.io import read_table

logger = logging.getLogger(__name__)

COHORT_COLUMNS = ["participant_id", "session_id", "diagnosis", "age", "sex", "site", "path"]
NO_SESSION = "n/a"  # session_id of the images of a dataset without ses- folders

# Accepted spellings, in order of preference (lower-cased before matching).
COLUMN_ALIASES = {
    "diagnosis": ("diagnosis", "dx", "group", "diagnosis_bl", "dx_bl"),
    "age": ("age", "age_bl"),
    "sex": ("sex", "gender", "ptgender"),
    "site": ("site", "site_id", "center", "centre"),
}
_SEX_CODES = {"m": "M", "male": "M", "1": "M", "f": "F", "female": "F", "2": "F"}
_LABEL = re.compile(r"[A-Za-z0-9]+")
_MISSING = ("", "n/a", "NA")


def _read_tsv(path: Path) -> pd.DataFrame:
    return read_table(path, "fix or remove the file (BIDS tables are UTF-8, tab-separated)", dtype=str,
                      na_values=list(_MISSING), keep_default_na=False)


def _stripped(values: pd.Series) -> pd.Series:
    """Text values without surrounding whitespace; blank or ``n/a`` cells become missing."""
    stripped = values.map(lambda value: value.strip() if isinstance(value, str) else value)
    return stripped.mask(stripped.isin(_MISSING))


def normalise_diagnoses(diagnosis: pd.Series) -> pd.Series:
    """Diagnoses stripped of surrounding whitespace, spellings differing only in letter case unified.

    The most frequent spelling wins (ties: the upper-case one); a warning names the spellings merged.
    """
    diagnosis = _stripped(diagnosis)
    counts = diagnosis.value_counts()
    spelling = {}
    for _, group in counts.groupby(lambda name: name.lower(), sort=True):
        if len(group) < 2:
            continue
        ranked = sorted(group.items(), key=lambda item: (-item[1], item[0] != item[0].upper(), item[0]))
        chosen = ranked[0][0]
        logger.warning("diagnosis spellings %s differ only in letter case; using %r for all",
                       ", ".join(f"{name!r} ({count})" for name, count in ranked), chosen)
        spelling.update({name: chosen for name, _ in ranked})
    return diagnosis.replace(spelling)


def standard_columns(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Rename known aliases to diagnosis / age / sex / site and normalise their values."""
    lower = {c.lower(): c for c in table.columns}
    renamed = {}
    for name, aliases in COLUMN_ALIASES.items():
        found = next((lower[a] for a in aliases if a in lower), None)
        if found is not None:
            renamed[name] = table[found]
    out = pd.DataFrame(renamed, index=table.index)
    if "diagnosis" in out:
        out["diagnosis"] = _stripped(out["diagnosis"])
    if "age" in out:
        age = pd.to_numeric(out["age"], errors="coerce")
        bad = out["age"].notna() & age.isna()
        if bad.any():
            raise InputDataError(f"{path}: non-numeric age {out['age'][bad].iloc[0]!r}; use years or n/a")
        out["age"] = age
    if "sex" in out:
        codes = out["sex"].str.strip().str.lower()
        mapped = codes.map(_SEX_CODES)
        bad = codes.notna() & mapped.isna()
        if bad.any():
            raise InputDataError(f"{path}: unknown sex value {out['sex'][bad].iloc[0]!r}; "
                                 "use M/F, male/female or 1/2")
        out["sex"] = mapped
    return out


def read_participants(bids_dir: Path, require_diagnosis: bool = True) -> pd.DataFrame:
    """``participants.tsv`` with standard columns, indexed by participant_id (empty if absent);
    without ``require_diagnosis`` a table without diagnoses is read (new subjects to classify)."""
    path = bids_dir / "participants.tsv"
    if not path.exists():
        logger.warning("%s has no participants.tsv: demographics stay empty", bids_dir)
        return pd.DataFrame(columns=["diagnosis", "age", "sex", "site"], index=pd.Index([], name="participant_id"))
    table = _read_tsv(path)
    if "participant_id" not in table:
        raise InputDataError(f"{path} has no participant_id column (columns: {', '.join(table.columns)})")
    duplicated = table["participant_id"][table["participant_id"].duplicated()]
    if not duplicated.empty:
        raise InputDataError(f"{path}: participant {duplicated.iloc[0]} is listed more than once; "
                             "keep one row per participant")
    standard = standard_columns(table, path)
    if "diagnosis" not in standard and not require_diagnosis:
        standard["diagnosis"] = np.nan
    if "diagnosis" not in standard:
        raise InputDataError(f"{path} has no diagnosis column (columns: {', '.join(table.columns)}); "
                             f"name it one of {', '.join(COLUMN_ALIASES['diagnosis'])}")
    return standard.set_index(table["participant_id"].rename("participant_id"))


def read_sessions(subject_dir: Path) -> pd.DataFrame:
    """``sub-X_sessions.tsv`` with standard columns, indexed by session_id (empty if absent)."""
    path = subject_dir / f"{subject_dir.name}_sessions.tsv"
    if not path.exists():
        return pd.DataFrame(index=pd.Index([], name="session_id"))
    table = _read_tsv(path)
    if "session_id" not in table:
        raise InputDataError(f"{path} has no session_id column (columns: {', '.join(table.columns)})")
    duplicated = table["session_id"][table["session_id"].duplicated()]
    if not duplicated.empty:
        raise InputDataError(f"{path}: session {duplicated.iloc[0]} is listed more than once; "
                             "keep one row per session")
    return standard_columns(table, path).set_index(table["session_id"].rename("session_id"))


def _check_folder_labels(bids_dir: Path) -> None:
    """Refuse ``sub-*`` / ``ses-*`` folders whose label is not alphanumeric (pybids would cut it)."""
    for subject in sorted(p for p in bids_dir.glob("sub-*") if p.is_dir()):
        for folder in [subject, *sorted(p for p in subject.glob("ses-*") if p.is_dir())]:
            prefix, label = folder.name.split("-", 1)
            if not _LABEL.fullmatch(label):
                example = re.sub(r"[^A-Za-z0-9]", "", label) or "01"
                raise InputDataError(f"folder {folder} has the label {label!r}: BIDS labels are letters and digits "
                                     f"only; rename it (and the files inside) to an alphanumeric label such as "
                                     f"{prefix}-{example}")


def _t1w_files(bids_dir: Path, database_dir: str | os.PathLike | None, acquisition: str | None,
               validate: bool) -> pd.DataFrame:
    from bids import BIDSLayout

    layout = BIDSLayout(bids_dir, validate=validate, database_path=database_dir)
    rows = []
    for bids_file in layout.get(suffix="T1w", extension=[".nii.gz", ".nii"]):
        relative = Path(os.path.relpath(bids_file.path, layout.root))
        # pybids parses absolute paths: a parent folder such as /data/func/ would set the datatype
        entities = layout.parse_file_entities("/" + relative.as_posix())
        if relative.parent.name != "anat" or "subject" not in entities:
            continue
        if acquisition is not None and entities.get("acquisition") != acquisition:
            continue
        rows.append({"participant_id": f"sub-{entities['subject']}",
                     "session_id": f"ses-{entities['session']}" if "session" in entities else NO_SESSION,
                     "path": bids_file.path,
                     **{f"bids_{k}": v for k, v in entities.items()
                        if k not in ("subject", "session", "suffix", "extension", "datatype")}})
    return pd.DataFrame(rows)


def _warn_unlisted(cohort: pd.DataFrame, participants: pd.DataFrame, path: Path) -> None:
    """Warn about imaged subjects missing from participants.tsv (and those left without a diagnosis)."""
    unlisted = cohort[~cohort["participant_id"].isin(participants.index)]
    if unlisted.empty:
        return
    subjects = unlisted["participant_id"].unique()
    undiagnosed = unlisted.loc[unlisted["diagnosis"].isna(), "participant_id"].unique()
    message = (f"{len(subjects)} imaged subject(s) are not in {path} (first: {', '.join(subjects[:5])}): "
               "their participant-level demographics are n/a")
    if len(undiagnosed):
        message += (f"; {len(undiagnosed)} of them ({', '.join(undiagnosed[:5])}) have no diagnosis in their "
                    "sub-*_sessions.tsv either, so their diagnosis is n/a")
    logger.warning("%s; add them to %s", message, path.name)


def load_cohort(bids_dir: str | os.PathLike, *, acquisition: str | None = None,
                database_dir: str | os.PathLike | None = None, validate: bool = False,
                require_diagnosis: bool = True) -> pd.DataFrame:
    """One row per T1w image: participant_id, session_id, diagnosis, age, sex, site, path, BIDS entities.

    ``database_dir`` keeps pybids' index between calls (index a large dataset once; delete it after
    adding images: removed images are detected, added ones are not); ``require_diagnosis=False``
    reads a ``participants.tsv`` without diagnoses (left empty). Where a session
    has several T1w runs, the first in sorted path order is kept and a warning names the others.
    """
    bids_dir = Path(bids_dir)
    if not (bids_dir / "dataset_description.json").is_file():
        raise InputDataError(f"{bids_dir} is not a BIDS dataset (no dataset_description.json); "
                             "point to the dataset root or convert the data to BIDS (for example with Clinica)")
    _check_folder_labels(bids_dir)
    files = _t1w_files(bids_dir, database_dir, acquisition, validate)
    if files.empty:
        raise InputDataError(f"no T1w image found in {bids_dir} (expected sub-*/[ses-*/]anat/*_T1w.nii[.gz]"
                             + (f" with acq-{acquisition}" if acquisition else "") + ")")
    if database_dir is not None:
        gone = next((p for p in files["path"] if not os.path.exists(p)), None)
        if gone is not None:
            raise InputDataError(f"the index cache {database_dir} is stale: {gone} no longer exists; "
                                 "delete the cache folder to re-index")
    files = files.sort_values("path")
    repeated = files.duplicated(["participant_id", "session_id"], keep="first")
    for row in files[repeated].itertuples():
        logger.warning("%s %s has several T1w images; keeping the first in path order, ignoring %s",
                       row.participant_id, row.session_id, row.path)
    files = files[~repeated]

    participants = read_participants(bids_dir, require_diagnosis)
    rows = []
    for participant, images in files.groupby("participant_id", sort=True):
        sessions = read_sessions(bids_dir / participant)
        base = participants.loc[participant] if participant in participants.index else pd.Series(dtype=object)
        for image in images.itertuples(index=False):
            record = image._asdict()
            session = sessions.loc[image.session_id] if image.session_id in sessions.index else pd.Series(dtype=object)
            for column in ("diagnosis", "age", "sex", "site"):
                value = session.get(column, np.nan)
                record[column] = value if pd.notna(value) else base.get(column, np.nan)
            rows.append(record)
    cohort = pd.DataFrame(rows)
    extra = [c for c in cohort.columns if c not in COHORT_COLUMNS]
    cohort = cohort[COHORT_COLUMNS + extra].sort_values(["participant_id", "session_id"]).reset_index(drop=True)
    cohort["age"] = pd.to_numeric(cohort["age"])
    cohort["diagnosis"] = normalise_diagnoses(cohort["diagnosis"])
    if (bids_dir / "participants.tsv").exists():
        _warn_unlisted(cohort, participants, bids_dir / "participants.tsv")
    return cohort


def load_image(path: str | os.PathLike) -> tuple[torch.Tensor, np.ndarray]:
    """A 3D image as a float32 tensor reoriented to RAS+, with its (RAS) affine.

    Clear errors for a missing, empty or corrupt file, a 4D image, non-finite voxels and a
    constant (for example all-zero) image.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"image {path} does not exist")
    if path.stat().st_size == 0:
        raise InputDataError(f"image {path} is an empty (0-byte) file, like the placeholders of public BIDS "
                             "example layouts; replace it with the real NIfTI file")
    try:
        image = nib.load(path)
        image = nib.as_closest_canonical(image)
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as error:  # nibabel raises many types for corrupt files
        raise InputDataError(f"cannot read {path} as NIfTI ({error}); re-export or re-convert it") from error
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputDataError(f"{path} has shape {data.shape}; a 3D T1w image is expected "
                             "(split 4D series or pick one volume)")
    if not np.isfinite(data).all():
        raise InputDataError(f"{path} contains NaN or infinite voxels; fix the conversion or replace them")
    if data.size and data.min() == data.max():
        raise InputDataError(f"{path} is a constant image (all voxels {data.flat[0]:g}): an empty or failed "
                             "conversion; re-export it or remove it from the dataset")
    return torch.from_numpy(np.ascontiguousarray(data)), image.affine


def summarize_table(cohort: pd.DataFrame) -> pd.DataFrame:
    """Per diagnosis: subjects, images, subjects per sex (F, M) and age mean ± std (all images)."""
    rows = []
    for label, group in cohort.groupby(cohort["diagnosis"].astype(object).fillna("n/a"), sort=True):
        sex = group.drop_duplicates("participant_id")["sex"]
        rows.append({"diagnosis": label, "subjects": group["participant_id"].nunique(), "images": len(group),
                     "F": int((sex == "F").sum()), "M": int((sex == "M").sum()),
                     "age": f"{group['age'].mean():.1f} ± {group['age'].std():.1f}"})
    return pd.DataFrame(rows)
