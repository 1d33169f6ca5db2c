"""Study selection (thesis §1.5.2): baseline session per subject, stable-diagnosis subjects, and
diagnoses matched to a study's configured label spellings."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pandas as pd

from medaug.errors import ConfigError

logger = logging.getLogger(__name__)


def session_month(session_id: pd.Series) -> pd.Series:
    """Months since baseline from Clinica-style labels (``ses-M000``, ``ses-M00``, ``ses-M6``); NaN otherwise."""
    return pd.to_numeric(session_id.astype(str).str.extract(r"^ses-M(\d+)$")[0], errors="coerce")


def chronological(cohort: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted per participant by visit month, then age, then session label."""
    order = cohort.assign(_month=session_month(cohort["session_id"]))
    return order.sort_values(["participant_id", "_month", "age", "session_id"], na_position="last",
                             kind="stable").drop(columns="_month")


def baseline_sessions(cohort: pd.DataFrame) -> pd.DataFrame:
    """The earliest session of every participant (by visit month, then age, then label)."""
    return chronological(cohort).groupby("participant_id", sort=True).head(1).reset_index(drop=True)


def stable_diagnosis(cohort: pd.DataFrame) -> pd.DataFrame:
    """Rows of participants whose diagnosis is known and identical at every session."""
    per_subject = cohort.groupby("participant_id")["diagnosis"]
    stable = per_subject.transform(lambda d: d.notna().all() and d.nunique() == 1).astype(bool)
    dropped = cohort.loc[~stable, "participant_id"].unique()
    if len(dropped):
        logger.info("stable-diagnosis filter drops %d participants (diagnosis changes or is missing): %s",
                    len(dropped), ", ".join(dropped[:10]) + (" …" if len(dropped) > 10 else ""))
    return cohort[stable].reset_index(drop=True)


def match_labels(diagnosis: pd.Series, labels: Iterable[str]) -> pd.Series:
    """Diagnoses that match a configured label up to letter case, spelled as that label (``cn`` → ``CN``).

    Other values are kept as they are; a warning names every spelling changed.
    """
    labels = list(labels)
    spelling = {label.lower(): label for label in labels}
    if len(spelling) < len(set(labels)):
        raise ConfigError(f"labels {labels} contain spellings that differ only in letter case; keep one of each")
    matched = diagnosis.map(lambda value: spelling.get(value.lower(), value) if isinstance(value, str) else value)
    changed = diagnosis[matched.ne(diagnosis) & diagnosis.notna()]
    for value, count in changed.value_counts().sort_index().items():
        logger.warning("diagnosis %r (%d image(s)) read as the configured label %r", value, count,
                       spelling[value.lower()])
    return matched
