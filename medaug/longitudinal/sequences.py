"""Per-subject sequences from a cohort table: visits ordered by age, padded, with a mask.

Missing visits are never filled: they are absent from the padded tensors' observed entries
(``mask`` False) and every loss ignores them. Ages are mapped to [0, 1] between the youngest and
oldest observation of the training cohort (thesis §5.3); the mapping is kept to go back to years.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from medaug.data.selection import chronological
from medaug.errors import InputDataError

logger = logging.getLogger(__name__)


@dataclass
class AgeScale:
    """t = (age − youngest) / (oldest − youngest)."""

    youngest: float
    oldest: float

    def to_time(self, age):
        return (np.asarray(age, dtype=float) - self.youngest) / (self.oldest - self.youngest)

    def to_age(self, time):
        return self.youngest + np.asarray(time, dtype=float) * (self.oldest - self.youngest)

    @classmethod
    def fit(cls, ages) -> AgeScale:
        ages = np.asarray(ages, dtype=float)
        if ages.size == 0 or np.ptp(ages) == 0:
            raise InputDataError("ages must span more than one value to define observation times")
        return cls(float(ages.min()), float(ages.max()))


@dataclass
class Sequences:
    """Padded sequences: values (N, P, D), times (N, P) in [0, 1], mask (N, P), and the rows of each
    observed entry (participant_id, session_id, age, ...)."""

    participants: list[str]
    values: torch.Tensor
    times: torch.Tensor
    mask: torch.Tensor
    rows: pd.DataFrame

    def __len__(self) -> int:
        return len(self.participants)

    def first_visit(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Values and times of each subject's first observed visit (N, D), (N,)."""
        index = self.mask.float().argmax(1)
        rows = torch.arange(len(self))
        return self.values[rows, index], self.times[rows, index]


def build_sequences(cohort: pd.DataFrame, values: torch.Tensor, scale: AgeScale | None = None,
                    max_visits: int | None = None) -> tuple[Sequences, AgeScale]:
    """Group the rows of ``cohort`` (participant_id, session_id, age) and their ``values`` (one row
    each, for example VAE features or flattened images) into padded per-subject sequences."""
    if len(cohort) != len(values):
        raise InputDataError(f"{len(cohort)} cohort rows but {len(values)} values; give one value per image")
    missing_age = cohort["age"].isna()
    if missing_age.any():
        row = cohort[missing_age].iloc[0]
        raise InputDataError(f"{row['participant_id']} {row['session_id']} has no age; ages give the "
                             "observation times (add them to sessions.tsv)")
    table = cohort.reset_index(drop=True).assign(_row=np.arange(len(cohort)))
    table = chronological(table)
    scale = scale or AgeScale.fit(table["age"])
    groups = list(table.groupby("participant_id", sort=True))
    longest = max(len(g) for _, g in groups)
    visits = min(longest, max_visits) if max_visits else longest
    padded = torch.zeros(len(groups), visits, values.shape[1], dtype=values.dtype)
    times = torch.zeros(len(groups), visits)
    mask = torch.zeros(len(groups), visits, dtype=torch.bool)
    kept = []
    for i, (_, group) in enumerate(groups):
        group = group.head(visits)
        n = len(group)
        padded[i, :n] = values[torch.as_tensor(group["_row"].to_numpy().copy())]
        times[i, :n] = torch.as_tensor(scale.to_time(group["age"]), dtype=torch.float32)
        mask[i, :n] = True
        kept.append(group.assign(visit=np.arange(n)))
    rows = pd.concat(kept, ignore_index=True).drop(columns="_row")
    return Sequences([p for p, _ in groups], padded, times, mask, rows), scale


def drop_visits(sequences: Sequences, rate: float, seed: int) -> tuple[Sequences, torch.Tensor]:
    """Hide each follow-up visit (never the first) with probability ``rate``; returns the reduced
    sequences and the mask of hidden entries (to score imputation against the truth)."""
    generator = torch.Generator().manual_seed(seed)
    hide = (torch.rand(sequences.mask.shape, generator=generator) < rate) & sequences.mask
    hide[:, 0] = False
    kept = Sequences(sequences.participants, sequences.values, sequences.times, sequences.mask & ~hide,
                     sequences.rows)
    return kept, hide


@dataclass
class VisitGrid:
    """Sequences on a regular visit grid (flow-based model, ch. 6): slot l is ``l × interval`` years
    after the subject's first visit. values (N, T, ...), mask (N, T); ``baseline_age`` (N,) and
    ``rows`` (participant_id, session_id, age, path, ..., slot) of the observed entries."""

    participants: list[str]
    values: torch.Tensor
    mask: torch.Tensor
    baseline_age: np.ndarray
    interval_years: float
    rows: pd.DataFrame

    def ages(self) -> np.ndarray:
        """Age of every slot (N, T), observed or not."""
        return self.baseline_age[:, None] + self.interval_years * np.arange(self.mask.shape[1])[None, :]


def session_label(slot: int, interval_years: float) -> str:
    """The session of a grid slot in months after baseline, ADNI style (``M000``, ``M012``, ...)."""
    return f"M{round(slot * interval_years * 12):03d}"


def visit_grid(table: pd.DataFrame, values: torch.Tensor, *, visits: int, interval_years: float) -> VisitGrid:
    """Place each subject's images on the grid by age since their first visit (rounded to the nearest
    slot). Visits beyond the grid are left out with a warning; two images in one slot are refused."""
    if len(table) != len(values):
        raise InputDataError(f"{len(table)} rows but {len(values)} images; give one image per row")
    if interval_years <= 0 or visits < 2:
        raise InputDataError(f"the grid needs visits ≥ 2 and interval > 0 years, got {visits} and {interval_years}")
    if "age" not in table or table["age"].isna().any():
        row = table[table["age"].isna()].iloc[0] if "age" in table else table.iloc[0]
        raise InputDataError(f"{row['participant_id']} {row.get('session_id', '')} has no age; ages place visits "
                             "on the grid (add them to sessions.tsv or the labels TSV)")
    table = table.reset_index(drop=True).assign(_row=np.arange(len(table)))
    table = table.assign(slot=(table["age"] - table.groupby("participant_id")["age"].transform("min"))
                         .div(interval_years).round().astype(int))
    clash = table[table.duplicated(["participant_id", "slot"], keep=False)]
    if not clash.empty:
        raise InputDataError(f"{clash['participant_id'].iloc[0]}: sessions {', '.join(clash['session_id'].head(2))} "
                             f"fall on the same {interval_years}-year visit slot; use a shorter interval")
    beyond = table["slot"] >= visits
    if beyond.any():
        logger.warning("%d image(s) later than visit %d of the grid left out", int(beyond.sum()), visits)
    table = table[~beyond].sort_values(["participant_id", "slot"])
    participants = sorted(table["participant_id"].unique())
    subject_index = {p: i for i, p in enumerate(participants)}
    grid = torch.zeros(len(participants), visits, *values.shape[1:], dtype=values.dtype)
    mask = torch.zeros(len(participants), visits, dtype=torch.bool)
    rows = torch.tensor(table["participant_id"].map(subject_index).to_numpy(dtype=np.int64))
    slots = torch.tensor(table["slot"].to_numpy(dtype=np.int64))
    grid[rows, slots] = values[torch.tensor(table["_row"].to_numpy(dtype=np.int64))]
    mask[rows, slots] = True
    baseline = table.groupby("participant_id")["age"].min().reindex(participants).to_numpy(dtype=float)
    return VisitGrid(participants, grid, mask, baseline, float(interval_years),
                     table.drop(columns="_row").reset_index(drop=True))
