"""Each sanity check fires on a hand-made table that should trigger it, and stays quiet on one that should not."""

import numpy as np
import pandas as pd

from medaug.study.sanity import (
    chance_level, constant_predictions, generator_training_size, identical_runs, inconclusive_differences, pool_warnings,
    qc_exclusions, sanity_checks, sanity_table, search_ties, small_test_sets, subject_weight, subjects_per_label)


def _predictions(probabilities: dict[tuple[str, int], list[float]], test_set: str = "test") -> pd.DataFrame:
    """Predictions of classifier "cnn", condition "real": P(AD) per (test set, run), subjects alternating CN / AD."""
    rows = []
    for (condition, run), p_ad in probabilities.items():
        for i, p in enumerate(p_ad):
            rows.append({"classifier": "cnn", "condition": condition, "run": run, "test_set": test_set,
                         "participant_id": f"sub-{i:02d}", "session_id": "ses-M000",
                         "true_label": ("CN", "AD")[i % 2], "predicted_label": "AD" if p >= 0.5 else "CN",
                         "proba_CN": 1 - p, "proba_AD": p})
    return pd.DataFrame(rows)


def _summary(mean: float, test_set: str = "test") -> pd.DataFrame:
    return pd.DataFrame([{"classifier": "cnn", "condition": "real", "test_set": test_set, "runs": 3,
                          "balanced_accuracy_mean": mean}])


def test_constant_predictions_name_the_runs_and_spare_informative_ones():
    prior = _predictions({("real", 0): [0.5544] * 4, ("real", 1): [0.5545, 0.5544, 0.5546, 0.5545],
                          ("real", 2): [0.2, 0.9, 0.3, 0.8]})
    [found] = constant_predictions(prior)
    assert found.subject == "cnn / real (test)" and "run(s) 0, 1 " in found.message and "< 0.001" in found.message
    assert "every subject predicted AD in run(s) 0, 1 of 3" in found.message
    assert constant_predictions(_predictions({("real", 0): [0.2, 0.9, 0.3, 0.8]})) == []
    # a classifier that varies a little but always says CN is flagged too
    [one_class] = constant_predictions(_predictions({("real", 0): [0.1, 0.3, 0.2, 0.4]}))
    assert "every subject predicted CN" in one_class.message and "constant probabilities" not in one_class.message
    # the GAN-test on a synthetic pool is not a test set of the classifier checks
    assert constant_predictions(_predictions({("real", 0): [0.55] * 4}, test_set="synthetic-prior")) == []


def test_identical_runs_are_named_and_varying_ones_spared():
    same = _predictions({("real", 0): [0.2, 0.9, 0.3, 0.8], ("real", 1): [0.2, 0.9, 0.3, 0.8]})
    [found] = identical_runs(same)
    assert found.subject == "cnn" and "same test predictions for real" in found.message
    assert identical_runs(_predictions({("real", 0): [0.2, 0.9, 0.3, 0.8], ("real", 1): [0.2, 0.9, 0.3, 0.7]})) == []
    assert identical_runs(_predictions({("real", 0): [0.2, 0.9, 0.3, 0.8]})) == []  # one run: nothing to compare


def test_chance_level_by_mean_and_by_interval():
    [at] = chance_level(_summary(0.52))
    assert "52.0% ≤ 55%" in at.message
    intervals = pd.DataFrame([{"classifier": "cnn", "condition": "real", "test_set": "test",
                               "ci_low": 0.45, "ci_high": 0.9}])
    [wide] = chance_level(_summary(0.7), intervals)
    assert "95% CI [45.0, 90.0]% includes chance" in wide.message
    assert chance_level(_summary(0.7), intervals.assign(ci_low=0.6)) == []
    assert chance_level(_summary(0.7)) == []


def test_search_ties():
    trials = pd.DataFrame({"trial": [0, 1, 2], "cv_balanced_accuracy": [0.5, 0.5, 0.5]})
    [all_tied] = search_ties(trials)
    assert "all 3 trials scored 50.0%" in all_tied.message and "won by default" in all_tied.message
    [best_tied] = search_ties(trials.assign(cv_balanced_accuracy=[0.6, 0.7, 0.7]))
    assert "trials 1, 2 tied" in best_tied.message
    assert search_ties(trials.assign(cv_balanced_accuracy=[0.6, 0.7, 0.65])) == []
    assert search_ties(None) == []


def test_small_test_sets_state_one_subjects_weight():
    small = _predictions({("real", 0): [0.2, 0.9] * 4})  # 4 subjects per label
    assert subjects_per_label(small) == {"test": 4} and subject_weight(4) == 12.5
    [found] = small_test_sets(small)
    assert found.subject == "test" and "4 test subject(s)" in found.message and "12.5 points" in found.message
    assert small_test_sets(_predictions({("real", 0): [0.2, 0.9] * 15})) == []


def test_inconclusive_differences():
    differences = pd.DataFrame([
        {"classifier": "cnn", "test_set": "test", "condition": "a", "runs": 5,
         "balanced_accuracy_difference": 0.02, "ci_low": -0.01, "ci_high": 0.05},
        {"classifier": "cnn", "test_set": "test", "condition": "b", "runs": 5,
         "balanced_accuracy_difference": 0.08, "ci_low": 0.06, "ci_high": 0.10},
        {"classifier": "cnn", "test_set": "test", "condition": "c", "runs": 5,
         "balanced_accuracy_difference": 0.20, "ci_low": 0.15, "ci_high": 0.25}])
    found = {w.subject: w.message for w in inconclusive_differences(differences, {"test": 5})}  # 10 points each
    assert "includes 0: inconclusive" in found["cnn / a (test)"]
    assert "includes 0" not in found["cnn / b (test)"] and "one test subject's weight (10.0 points)" in found["cnn / b (test)"]
    assert "cnn / c (test)" not in found
    assert inconclusive_differences(pd.DataFrame(), {}) == []


def test_generator_training_size():
    rows = pd.DataFrame({"participant_id": [f"sub-{i // 2}" for i in range(30)] + [f"sub-x{i}" for i in range(8)],
                         "diagnosis": ["CN"] * 30 + ["AD"] * 8})  # CN: 30 images of 15 subjects; AD: 8 of 8
    [found] = generator_training_size(rows)
    assert found.subject == "AD generator" and "8 image(s) of 8 subject(s)" in found.message
    assert "fewer than 20 images or 10 subjects" in found.message
    assert generator_training_size(None) == []


def test_pool_warnings_reuse_the_quality_table():
    quality = pd.DataFrame({"sampler": ["prior", "prior"], "diagnosis": ["CN", "AD"],
                            "warnings": ["collapsed pool: diversity 0.12 < 0.5", ""]})
    [found] = pool_warnings(quality)
    assert found.subject == "prior / CN" and found.message == "collapsed pool: diversity 0.12 < 0.5"
    assert pool_warnings(quality.iloc[1:]) == [] and pool_warnings(pd.DataFrame()) == []


def test_qc_exclusions_count_images_and_subjects():
    excluded = pd.DataFrame({"participant_id": ["sub-01", "sub-01", "sub-07"],
                             "session_id": ["ses-M000", "ses-M012", "ses-M000"], "status": ["qc"] * 3,
                             "reason": ["NCC 0.21 < 0.5", "", "scale 1.6"]})
    [found] = qc_exclusions(excluded)
    assert "3 image(s) of 2 subject(s)" in found.message
    assert "sub-01 ses-M000 (NCC 0.21 < 0.5)" in found.message and "sub-07 ses-M000 (scale 1.6)" in found.message
    assert qc_exclusions(pd.DataFrame()) == [] and qc_exclusions(None) == []


def test_sanity_checks_run_every_check_and_tabulate():
    predictions = _predictions({("real", r): [0.55] * 4 for r in range(3)})
    differences = pd.DataFrame([{"classifier": "cnn", "test_set": "test", "condition": "x", "runs": 3,
                                 "balanced_accuracy_difference": 0.0, "ci_low": 0.0, "ci_high": 0.0}])
    warnings = sanity_checks(predictions=predictions, summary=_summary(0.5), differences=differences,
                             trials=pd.DataFrame({"trial": [0, 1], "cv_balanced_accuracy": [0.5, 0.5]}))
    assert {w.check for w in warnings} == {"constant predictions", "at chance", "search tie", "small test set",
                                           "inconclusive difference", "identical runs"}
    table = sanity_table(warnings)
    assert list(table.columns) == ["check", "subject", "message"] and len(table) == len(warnings)
    assert sanity_table([]).empty and list(sanity_table([]).columns) == ["check", "subject", "message"]
    healthy = _predictions({("real", r): list(np.tile([0.1, 0.9], 15) + 0.01 * r) for r in range(3)})
    assert sanity_checks(predictions=healthy, summary=_summary(0.95), differences=pd.DataFrame()) == []
