"""Subject-level, diagnosis-stratified, demographically balanced splits (thesis §1.5.4).

A test set of n subjects per label, the rest split train / validation 80 / 20, and optionally a
train-N subset (N per label). Each draw is redrawn until, within every label, the age t-test and
the χ² test on sex counts between the compared groups both give p ≥ a threshold (ClinicaDL uses
0.80), with a bounded number of tries and a seeded generator.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import stats

from medaug import __version__
from medaug.data.selection import baseline_sessions
from medaug.configuration import Config, check_seed
from medaug.errors import BalanceError, ConfigError, InputDataError, LeakageError
from medaug.io import read_table, write_json, write_tsv
from medaug.provenance import read_json_object

COHORT_COLUMNS = ("participant_id", "session_id", "diagnosis", "age", "sex", "site")


@dataclass
class SplitConfig(Config):
    """Parameters of a split; round-trips through :func:`dataclasses.asdict` / ``SplitConfig(**d)``."""

    section: ClassVar[str] = 'split'

    test_per_label: int
    validation_fraction: float = 0.2
    train_n: int | None = None
    seed: int = 0
    p_threshold: float = 0.8
    max_tries: int = 1000

    def validate(self) -> None:
        if self.test_per_label < 0:
            raise ConfigError(f"test_per_label must be ≥ 0, got {self.test_per_label}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.train_n is not None and self.train_n < 1:
            raise ConfigError(f"train_n must be ≥ 1, got {self.train_n}")
        if not 0.0 <= self.p_threshold < 1.0:
            raise ConfigError(f"p_threshold must be in [0, 1), got {self.p_threshold}")
        if self.max_tries < 1:
            raise ConfigError(f"max_tries must be ≥ 1, got {self.max_tries}")
        check_seed(self.seed, f"{self.section}.seed")


def read_cohort(path: str | os.PathLike) -> pd.DataFrame:
    """The cohort TSV of ``medaug cohort``; a missing or unreadable file, missing columns or
    non-numeric ages raise :class:`InputDataError` naming the file and the fix."""
    path = Path(path)
    fix = f"give the cohort TSV that `medaug cohort` writes (columns {', '.join(COHORT_COLUMNS)})"
    if not path.is_file():
        raise InputDataError(f"cohort table {path} not found; create it with `medaug cohort`")
    cohort = read_table(path, fix, na_values=["n/a"], keep_default_na=False)
    missing = [column for column in COHORT_COLUMNS if column not in cohort]
    if missing:
        raise InputDataError(f"{path} lacks column(s) {', '.join(missing)}; {fix}")
    if not pd.api.types.is_numeric_dtype(cohort["age"]):
        raise InputDataError(f"{path}: the age column must hold numbers (n/a when unknown); {fix}")
    return cohort


def subject_table(cohort: pd.DataFrame) -> pd.DataFrame:
    """One row per participant (its baseline session): participant_id, diagnosis, age, sex, site."""
    missing = cohort["diagnosis"].isna()
    if missing.any():
        raise InputDataError(f"participant {cohort.loc[missing, 'participant_id'].iloc[0]} has no diagnosis; "
                             "add it to participants.tsv or the sessions table, or drop the participant")
    return baseline_sessions(cohort)[["participant_id", "diagnosis", "age", "sex", "site"]]


def _age_p(a: pd.Series, b: pd.Series) -> float:
    a, b = a.dropna(), b.dropna()
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return 1.0
    return float(stats.ttest_ind(a, b).pvalue)


def _sex_p(a: pd.Series, b: pd.Series) -> float:
    table = np.array([[(s == "F").sum(), (s == "M").sum()] for s in (a, b)])
    if (table.sum(axis=0) == 0).any() or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(stats.chi2_contingency(table).pvalue)


def balance_p_values(group: pd.DataFrame, reference: pd.DataFrame) -> dict[str, float]:
    """Smallest p over labels of the age t-test and the sex χ² test, ``group`` vs ``reference``."""
    p_age, p_sex = 1.0, 1.0
    for label, rows in group.groupby("diagnosis"):
        ref = reference[reference["diagnosis"] == label]
        p_age = min(p_age, _age_p(rows["age"], ref["age"]))
        p_sex = min(p_sex, _sex_p(rows["sex"], ref["sex"]))
    return {"p_age": p_age, "p_sex": p_sex}


def _draw(subjects: pd.DataFrame, sizes: dict[str, int], rng: np.random.Generator) -> pd.Series:
    """Boolean mask choosing ``sizes[label]`` subjects of each label at random."""
    chosen = pd.Series(False, index=subjects.index)
    for label, n in sizes.items():
        index = subjects.index[subjects["diagnosis"] == label]
        chosen[rng.choice(index, size=n, replace=False)] = True
    return chosen


def _balanced_draw(subjects, sizes, rng, config, what) -> pd.Series:
    best = 0.0
    for _ in range(config.max_tries):
        chosen = _draw(subjects, sizes, rng)
        p = balance_p_values(subjects[chosen], subjects[~chosen])
        best = max(best, min(p.values()))
        if min(p.values()) >= config.p_threshold:
            return chosen
    raise BalanceError(f"no {what} draw reached p ≥ {config.p_threshold} for age and sex in "
                       f"{config.max_tries} tries (best {best:.3f}); lower p_threshold or raise max_tries")


def split_subjects(cohort: pd.DataFrame, config: SplitConfig) -> pd.DataFrame:
    """Assign every participant to test / train / validation; flag the train-N subset.

    Returns one row per participant with columns participant_id, diagnosis, age, sex, site, split,
    train_n (bool). Deterministic in ``config.seed``.
    """
    subjects = subject_table(cohort)
    rng = np.random.default_rng(config.seed)
    counts = subjects["diagnosis"].value_counts().sort_index()
    for label, n in counts.items():
        needed = config.test_per_label + 2 + (config.train_n or 0)
        if n < needed:
            raise InputDataError(f"label {label} has {n} subjects; the split needs at least {needed} "
                                 f"(test {config.test_per_label}, train-N {config.train_n or 0}, and 2 for "
                                 "train / validation); lower --test-per-label or --train-n")
    test = _balanced_draw(subjects, {k: config.test_per_label for k in counts.index}, rng, config, "test")
    rest = subjects[~test]
    val_sizes = {k: max(1, int(round(config.validation_fraction * v)))
                 for k, v in rest["diagnosis"].value_counts().sort_index().items()}
    val = _balanced_draw(rest, val_sizes, rng, config, "validation")
    split = pd.Series("test", index=subjects.index)
    split[rest.index[val.to_numpy()]] = "validation"
    split[rest.index[~val.to_numpy()]] = "train"
    subjects = subjects.assign(split=split, train_n=False)
    if config.train_n is not None:
        train = subjects[subjects["split"] == "train"]
        short = train["diagnosis"].value_counts()
        if (short < config.train_n).any():
            label = short.idxmin()
            raise InputDataError(f"label {label} has {short.min()} training subjects, fewer than train_n="
                                 f"{config.train_n}; lower --train-n or --test-per-label")
        chosen = _balanced_draw(train, {k: config.train_n for k in sorted(train["diagnosis"].unique())},
                                rng, config, f"train-{config.train_n}")
        subjects.loc[train.index[chosen.to_numpy()], "train_n"] = True
    return subjects


def assert_disjoint(**groups) -> None:
    """Raise :class:`LeakageError` when a participant is in two of the named groups.

    Each group is a sequence of participant ids or a DataFrame with a ``participant_id`` column.
    """
    seen: dict[str, str] = {}
    for name, group in groups.items():
        ids = group["participant_id"] if isinstance(group, pd.DataFrame) else group
        for participant in pd.unique(pd.Series(list(ids))):
            if participant in seen:
                raise LeakageError(f"participant {participant} is in both {seen[participant]} and {name}; "
                                   "splits must be disjoint at subject level")
            seen[participant] = name


def balance_report(subjects: pd.DataFrame) -> pd.DataFrame:
    """Per split and label: n, age mean ± std, sex and site counts, p-values against train."""
    train = subjects[subjects["split"] == "train"]
    groups = [(name, subjects[subjects["split"] == name]) for name in ("train", "validation", "test")]
    if subjects["train_n"].any():
        groups.append(("train_n", subjects[subjects["train_n"]]))
    rows = []
    for name, group in groups:
        p = balance_p_values(group, train) if name != "train" else {"p_age": np.nan, "p_sex": np.nan}
        for label, rows_label in group.groupby("diagnosis"):
            sites = rows_label["site"].value_counts().sort_index()
            rows.append({"split": name, "diagnosis": label, "n": len(rows_label),
                         "age_mean": round(rows_label["age"].mean(), 2), "age_std": round(rows_label["age"].std(), 2),
                         "F": int((rows_label["sex"] == "F").sum()), "M": int((rows_label["sex"] == "M").sum()),
                         "sites": ",".join(f"{k}:{v}" for k, v in sites.items()),
                         "p_age_vs_train": p["p_age"], "p_sex_vs_train": p["p_sex"]})
    return pd.DataFrame(rows)


def save_split(subjects: pd.DataFrame, config: SplitConfig, out_dir: str | os.PathLike) -> Path:
    """Write ``split.tsv``, ``balance.tsv`` and ``split.json`` (config, medaug version) atomically."""
    out_dir = Path(out_dir)
    write_tsv(out_dir / "split.tsv", subjects)
    write_tsv(out_dir / "balance.tsv", balance_report(subjects))
    write_json(out_dir / "split.json", {"config": dataclasses.asdict(config), "medaug_version": __version__})
    return out_dir


def load_split(split_dir: str | os.PathLike) -> tuple[pd.DataFrame, SplitConfig]:
    """Read a split written by :func:`save_split`; checks that its groups are disjoint."""
    split_dir = Path(split_dir)
    for name in ("split.tsv", "split.json"):
        if not (split_dir / name).exists():
            raise InputDataError(f"{split_dir / name} not found; create the split with `medaug split`")
    fix = "create the split again with `medaug split`"
    subjects = pd.read_csv(split_dir / "split.tsv", sep="\t", na_values=["n/a"], keep_default_na=False)
    try:
        config = SplitConfig.from_dict(read_json_object(split_dir / "split.json", fix).get("config"))
    except ConfigError as error:
        raise InputDataError(f"{split_dir / 'split.json'}: {error}; {fix}") from None
    assert_disjoint(**{name: group for name, group in subjects.groupby("split")})
    return subjects, config
