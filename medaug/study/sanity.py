"""Sanity checks of a finished study: what a researcher should read before its numbers.

Each check is a pure function of the study's tables and returns :class:`SanityWarning` s whose
message states the threshold it applied; :func:`sanity_checks` runs them all. Synthetic test sets
(``synthetic-<sampler>``, the GAN-test) are left out of the checks of classifiers and test sizes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

CONSTANT_STD = 1e-3          # probabilities whose std across test subjects is below this are constant
CHANCE_MARGIN = 0.05         # mean balanced accuracy ≤ chance + this is "at chance"
CHANCE = 0.5
MIN_TEST_PER_LABEL = 15      # fewer test subjects per label: one subject moves balanced accuracy a lot
MIN_GENERATOR_IMAGES = 20    # per class, to train a generator
MIN_GENERATOR_SUBJECTS = 10
TIE = 1e-9                   # search scores closer than this are tied
LISTED = 10                  # at most this many names in a message


@dataclass(frozen=True)
class SanityWarning:
    """One finding: the ``check`` that raised it, what it is about (``subject``) and why."""

    check: str
    subject: str
    message: str


def _real_test_sets(predictions: pd.DataFrame) -> pd.DataFrame:
    return predictions[~predictions["test_set"].astype(str).str.startswith("synthetic-")]


def _names(values) -> str:
    values = [str(v) for v in values]
    return ", ".join(values[:LISTED]) + (f" and {len(values) - LISTED} more" if len(values) > LISTED else "")


def subjects_per_label(predictions: pd.DataFrame) -> dict[str, int]:
    """Per test set: the fewest test subjects of any label (one run's predictions)."""
    first = predictions.drop_duplicates(["test_set", "participant_id", "session_id"])
    return {test_set: int(group.groupby("true_label")["participant_id"].nunique().min())
            for test_set, group in first.groupby("test_set", sort=False)}


def subject_weight(n_per_label: int) -> float:
    """Balanced-accuracy points that one test subject of a label of ``n_per_label`` moves."""
    return 100 / (2 * n_per_label)


def constant_predictions(predictions: pd.DataFrame) -> list[SanityWarning]:
    """Runs whose test probabilities barely vary across subjects, or that predict one class only."""
    found = []
    probabilities = [c for c in predictions if c.startswith("proba_")]
    for (classifier, condition, test_set), group in _real_test_sets(predictions).groupby(
            ["classifier", "condition", "test_set"], sort=False):
        runs = group.groupby("run", sort=True)
        spread = runs[probabilities].std(ddof=0).max(axis=1)
        flat = spread.index[spread < CONSTANT_STD].tolist()
        single = runs["predicted_label"].nunique()
        one_class = single.index[single == 1].tolist()
        if not flat and not one_class:
            continue
        parts = []
        if flat:
            parts.append(f"constant probabilities in run(s) {_names(flat)} (std across the {group['participant_id'].nunique()} "
                         f"subjects < {CONSTANT_STD:g})")
        if one_class:
            labels = sorted(set(group.loc[group["run"].isin(one_class), "predicted_label"]))
            parts.append(f"every subject predicted {' / '.join(labels)} in run(s) {_names(one_class)}")
        found.append(SanityWarning("constant predictions", f"{classifier} / {condition} ({test_set})",
                                   f"{'; '.join(parts)} of {runs.ngroups}: the classifier ignores the images "
                                   "(it learned the class prior)"))
    return found


def chance_level(summary: pd.DataFrame, intervals: pd.DataFrame | None = None) -> list[SanityWarning]:
    """Classifiers / conditions whose mean balanced accuracy is at or below chance (+ margin), or
    whose 95% CI (``intervals``: ``ci_low``, ``ci_high``) includes chance."""
    found = []
    rows = summary[~summary["test_set"].astype(str).str.startswith("synthetic-")]
    bounds = {} if intervals is None else {
        (r.classifier, r.condition, r.test_set): (r.ci_low, r.ci_high) for r in intervals.itertuples()}
    for row in rows.itertuples():
        subject = f"{row.classifier} / {row.condition} ({row.test_set})"
        mean = row.balanced_accuracy_mean
        low, high = bounds.get((row.classifier, row.condition, row.test_set), (np.nan, np.nan))
        if mean <= CHANCE + CHANCE_MARGIN:
            found.append(SanityWarning("at chance", subject, f"mean balanced accuracy {100 * mean:.1f}% ≤ "
                                       f"{100 * (CHANCE + CHANCE_MARGIN):.0f}% (chance {100 * CHANCE:.0f}% + "
                                       f"{100 * CHANCE_MARGIN:.0f} points) over {row.runs} run(s)"))
        elif low <= CHANCE <= high:
            found.append(SanityWarning("at chance", subject, f"mean balanced accuracy {100 * mean:.1f}% but its "
                                       f"95% CI [{100 * low:.1f}, {100 * high:.1f}]% includes chance "
                                       f"({100 * CHANCE:.0f}%)"))
    return found


def search_ties(trials: pd.DataFrame | None) -> list[SanityWarning]:
    """A random search whose trials all scored alike (trial 0, the baseline, won by default), or
    whose best score is shared."""
    if trials is None or trials.empty:
        return []
    scores = trials["cv_balanced_accuracy"].to_numpy(float)
    best = scores.max()
    tied = trials.loc[np.abs(scores - best) <= TIE, "trial"].tolist()
    if len(tied) == len(trials) and len(trials) > 1:
        return [SanityWarning("search tie", "cnn architecture search",
                              f"all {len(trials)} trials scored {100 * best:.1f}% cross-validated balanced accuracy "
                              f"(within {TIE:g}): the search did not discriminate and trial {tied[0]} (the baseline) "
                              "won by default")]
    if len(tied) > 1:
        return [SanityWarning("search tie", "cnn architecture search",
                              f"trials {_names(tied)} tied for the best score {100 * best:.1f}%; trial {tied[0]} "
                              "was kept only for coming first")]
    return []


def small_test_sets(predictions: pd.DataFrame) -> list[SanityWarning]:
    """Test sets with fewer than :data:`MIN_TEST_PER_LABEL` subjects of some label."""
    return [SanityWarning("small test set", test_set,
                          f"{n} test subject(s) of the smallest label (< {MIN_TEST_PER_LABEL}): one subject moves "
                          f"balanced accuracy by {subject_weight(n):.1f} points, so differences between conditions "
                          "smaller than that cannot be told apart")
            for test_set, n in subjects_per_label(_real_test_sets(predictions)).items() if n < MIN_TEST_PER_LABEL]


def inconclusive_differences(differences: pd.DataFrame, per_label: dict[str, int]) -> list[SanityWarning]:
    """Paired differences against real-only whose 95% CI crosses zero, or whose size is below one
    test subject's weight (``per_label``: test subjects of the smallest label per test set)."""
    found = []
    if differences.empty:
        return found
    for row in differences.itertuples():
        difference, low, high = row.balanced_accuracy_difference, row.ci_low, row.ci_high
        text = f"{100 * difference:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}] points vs real-only over {row.runs} run(s)"
        weight = subject_weight(per_label[row.test_set]) if row.test_set in per_label else None
        reasons = []
        if low <= 0 <= high:
            reasons.append("the 95% CI includes 0: inconclusive")
        if weight is not None and abs(100 * difference) <= weight + TIE:
            reasons.append(f"no larger than one test subject's weight ({weight:.1f} points)")
        if reasons:
            found.append(SanityWarning("inconclusive difference", f"{row.classifier} / {row.condition} ({row.test_set})",
                                       f"{text}: {'; '.join(reasons)}"))
    return found


def generator_training_size(rows: pd.DataFrame | None) -> list[SanityWarning]:
    """Classes whose generator trained on fewer than :data:`MIN_GENERATOR_IMAGES` images or
    :data:`MIN_GENERATOR_SUBJECTS` subjects (``rows``: participant_id, diagnosis of the training images)."""
    if rows is None or rows.empty:
        return []
    counts = rows.groupby("diagnosis", sort=False).agg(images=("participant_id", "size"),
                                                        subjects=("participant_id", "nunique"))
    return [SanityWarning("small generator training set", f"{label} generator",
                          f"trained on {c.images} image(s) of {c.subjects} subject(s) (fewer than "
                          f"{MIN_GENERATOR_IMAGES} images or {MIN_GENERATOR_SUBJECTS} subjects): its samples are "
                          "unlikely to represent the class")
            for label, c in counts.iterrows() if c.images < MIN_GENERATOR_IMAGES or c.subjects < MIN_GENERATOR_SUBJECTS]


def pool_warnings(quality: pd.DataFrame | None) -> list[SanityWarning]:
    """The synthetic pools' own warnings (collapse, memorization, chains), from the quality table."""
    if quality is None or quality.empty:
        return []
    flagged = quality[quality["warnings"].fillna("").astype(str) != ""]
    return [SanityWarning("synthetic pool", f"{row.sampler} / {row.diagnosis}", row.warnings)
            for row in flagged.itertuples()]


def qc_exclusions(excluded: pd.DataFrame | None) -> list[SanityWarning]:
    """Images that preprocessing or its registration QC left out (``excluded.tsv`` rows)."""
    if excluded is None or excluded.empty:
        return []
    reasons = excluded.get("reason", pd.Series("", index=excluded.index)).fillna("").astype(str)
    listed = [f"{r.participant_id} {r.session_id}" + (f" ({reason})" if reason else "")
              for r, reason in zip(excluded.itertuples(), reasons)]
    return [SanityWarning("QC exclusions", "preprocessing",
                          f"{len(excluded)} image(s) of {excluded['participant_id'].nunique()} subject(s) left out by "
                          f"t1-linear or its registration QC (excluded.tsv): {_names(listed)}")]


def identical_runs(predictions: pd.DataFrame) -> list[SanityWarning]:
    """Classifiers whose runs all gave the same test probabilities (no randomness, same training
    set): their ± 0.0 and their run-resampled paired CIs describe no variability at all."""
    found = []
    probabilities = [c for c in predictions if c.startswith("proba_")]
    test = predictions[predictions["test_set"] == "test"]
    for classifier, rows in test.groupby("classifier", sort=False):
        same = []
        for condition, group in rows.groupby("condition", sort=False):
            table = group.pivot_table(index=["participant_id", "session_id"], columns="run", values=probabilities[0])
            if table.shape[1] > 1 and np.allclose(table.to_numpy(), table.to_numpy()[:, :1], rtol=0, atol=1e-9):
                same.append(condition)
        if same:
            found.append(SanityWarning("identical runs", classifier,
                                       f"every run gave the same test predictions for {_names(same)} (no randomness "
                                       "on the same training set): their ± 0.0 describes no variability; the CIs "
                                       "of accuracy_ci.tsv and differences.tsv, which resample test subjects, do"))
    return found


def sanity_checks(*, predictions: pd.DataFrame, summary: pd.DataFrame, differences: pd.DataFrame,
                  intervals: pd.DataFrame | None = None, quality: pd.DataFrame | None = None,
                  trials: pd.DataFrame | None = None, generator_training: pd.DataFrame | None = None,
                  excluded: pd.DataFrame | None = None) -> list[SanityWarning]:
    """Every check, data problems first: QC exclusions, generator training sizes, pools, search,
    test sizes, constant predictions, identical runs, chance level, inconclusive differences."""
    return [*qc_exclusions(excluded), *generator_training_size(generator_training), *pool_warnings(quality),
            *search_ties(trials), *small_test_sets(predictions), *constant_predictions(predictions),
            *identical_runs(predictions),
            *chance_level(summary, intervals), *inconclusive_differences(differences, subjects_per_label(predictions))]


def sanity_table(warnings: list[SanityWarning]) -> pd.DataFrame:
    """The warnings as a table (check, subject, message), for ``sanity.tsv``."""
    return pd.DataFrame([asdict(w) for w in warnings], columns=["check", "subject", "message"])
