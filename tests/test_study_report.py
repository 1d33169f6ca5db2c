import numpy as np
import pandas as pd
import pytest
import torch

from medaug.study.network_training import ClassifierTraining
from medaug.study.report import gan_table, memorization_table, paired_differences, summary_table
from medaug.study.search import CNNArchitecture, draw_architecture, random_search
from medaug.study.classifiers import build_classifier
from medaug.study.classifiers.scikit_learn import downsample


def _metrics():
    rng = np.random.default_rng(0)
    rows = []
    for run in range(6):
        for condition, kind, sampler, shift in (("real", "real", "n/a", 0.0), ("synthetic-prior-n5", "synthetic", "prior", -0.1),
                                                ("real+synthetic-prior-n5", "real+synthetic", "prior", 0.05)):
            for test_set in ("test", "synthetic-prior"):
                value = 0.6 + shift + 0.02 * run + rng.normal(0, 0.01)
                rows.append({"classifier": "cnn", "condition": condition, "kind": kind, "sampler": sampler,
                             "synthetic_per_class": 5 if sampler != "n/a" else 0, "run": run, "test_set": test_set,
                             **{m: value for m in ("balanced_accuracy", "sensitivity", "specificity", "accuracy", "f1",
                                                   "auc")}})
    return pd.DataFrame(rows)


def test_summary_is_mean_and_sample_std_over_runs():
    metrics = _metrics()
    summary = summary_table(metrics)
    row = summary[(summary["condition"] == "real+synthetic-prior-n5") & (summary["test_set"] == "test")].iloc[0]
    values = metrics[(metrics["condition"] == "real+synthetic-prior-n5") & (metrics["test_set"] == "test")]["balanced_accuracy"]
    assert row["runs"] == 6
    assert np.isclose(row["balanced_accuracy_mean"], values.mean())
    assert np.isclose(row["balanced_accuracy_std"], np.std(values, ddof=1))


def _predictions(correct: dict, runs: int = 3, per_label: int = 10) -> pd.DataFrame:
    """Predictions of conditions on ``per_label`` CN and AD test subjects: ``correct[condition]``
    (subject index → correct?) for every run."""
    rows = []
    for condition, is_correct in correct.items():
        for run in range(runs):
            for index in range(2 * per_label):
                truth = "CN" if index < per_label else "AD"
                wrong = "AD" if truth == "CN" else "CN"
                rows.append({"classifier": "sklearn-svm", "condition": condition, "run": run, "test_set": "test",
                             "participant_id": f"sub-{index:02d}", "session_id": "ses-M000", "true_label": truth,
                             "predicted_label": truth if is_correct(index) else wrong})
    return pd.DataFrame(rows)


def test_paired_differences_resample_test_subjects_with_a_known_answer():
    """Identical runs (a deterministic classifier); B is right on one more CN subject than real.
    The difference is 1/(2·10) = 0.05 per resample times the number of times that subject is drawn
    (Binomial(10, 1/10)): the 2.5 % quantile is 0 (P(0 draws) = 0.35) and the 97.5 % quantile 3
    draws (P(≤ 2) = 0.93, P(≤ 3) = 0.987), so the CI is exactly [0, 0.15]: inconclusive, where a CI
    over runs alone would be [0.05, 0.05]."""
    predictions = _predictions({"real": lambda i: i % 2 == 1, "better": lambda i: i % 2 == 1 or i == 0,
                                "same": lambda i: i % 2 == 1})
    differences = paired_differences(predictions).set_index("condition")
    assert differences.loc["better", "balanced_accuracy_difference"] == pytest.approx(0.05)
    assert (differences.loc["better", "ci_low"], differences.loc["better", "ci_high"]) == (0.0, pytest.approx(0.15))
    assert tuple(differences.loc["same", ["balanced_accuracy_difference", "ci_low", "ci_high"]]) == (0.0, 0.0, 0.0)
    assert differences.loc["better", "runs"] == 3 and "test subjects" in differences.loc["better", "resampled"]


def test_paired_differences_pair_runs_and_subjects():
    """A run effect shared by both conditions cancels; a subject effect shared by both does too."""
    rng = np.random.default_rng(0)
    hard = rng.random(40) < 0.3  # subjects both conditions get wrong
    rows = []
    for run in range(6):
        noise = rng.random(40) < 0.05 * run  # run-specific errors, shared by both conditions
        for condition, extra in (("real", 0.0), ("real+synthetic-prior-n5", 0.1)):
            fixed = rng.random(40) < extra
            for index in range(40):
                truth = "CN" if index < 20 else "AD"
                right = (not hard[index] and not noise[index]) or fixed[index]
                rows.append({"classifier": "cnn", "condition": condition, "run": run, "test_set": "test",
                             "participant_id": f"sub-{index:02d}", "session_id": "ses-M000", "true_label": truth,
                             "predicted_label": truth if right else ("AD" if truth == "CN" else "CN")})
    row = paired_differences(pd.DataFrame(rows)).iloc[0]
    assert row["condition"] == "real+synthetic-prior-n5" and row["runs"] == 6
    assert row["ci_low"] <= row["balanced_accuracy_difference"] <= row["ci_high"]
    assert 0 < row["balanced_accuracy_difference"] < 0.15 and row["ci_high"] - row["ci_low"] < 0.2


def test_gan_train_and_gan_test_read_the_right_rows():
    metrics = _metrics()
    gan = gan_table(metrics).iloc[0]
    synthetic = metrics[(metrics["condition"] == "synthetic-prior-n5") & (metrics["test_set"] == "test")]
    real_on_synthetic = metrics[(metrics["condition"] == "real") & (metrics["test_set"] == "synthetic-prior")]
    assert np.isclose(gan["gan_train_mean"], synthetic["balanced_accuracy"].mean())
    assert np.isclose(gan["gan_test_mean"], real_on_synthetic["balanced_accuracy"].mean())


def test_memorization_table_flags_copies_and_averages_and_not_fresh_draws():
    generator = torch.Generator().manual_seed(0)
    train = torch.rand(400, 1, 4, 4, 4, generator=generator)
    labels = torch.tensor([0, 1] * 200)
    copies = train + 1e-4 * torch.randn(train.shape, generator=generator)
    fresh = torch.rand(400, 1, 4, 4, 4, generator=generator)
    means = torch.stack([train[labels == c].mean(0) for c in (0, 1)]).repeat_interleave(50, 0)
    table = memorization_table({"copy": {0: copies[labels == 0], 1: copies[labels == 1]},
                                "fresh": {0: fresh[:200], 1: fresh[200:]}, "mean": {0: means[:50], 1: means[50:]}},
                               train, labels, ("CN", "AD"), 0.05)
    assert (table[table["sampler"] == "copy"]["copy_fraction"] == 1.0).all()
    assert (table[table["sampler"] == "mean"]["average_fraction"] == 1.0).all()
    # fresh draws from the training distribution score as the training images do, leave one out
    fresh_rows = table[table["sampler"] == "fresh"]
    assert (fresh_rows["copy_fraction"] + fresh_rows["average_fraction"] < 0.2).all()
    assert (table["real_copy_fraction"] + table["real_average_fraction"] < 0.2).all()


def test_downsample_is_average_pooling_to_the_voxel_budget():
    images = torch.rand(3, 1, 10, 12, 8)
    features = downsample(images, voxels=60)  # factor 2 gives 5·6·4 = 120 > 60; factor 3 gives 4·4·3 = 48
    assert features.shape == (3, 48)
    assert np.isclose(features[0, 0], images[0, 0, :3, :3, :3].mean().item(), atol=1e-6)
    assert downsample(images, voxels=10_000).shape == (3, 960)


def test_sklearn_classifiers_separate_shifted_images():
    generator = torch.Generator().manual_seed(1)
    labels = torch.tensor([0, 1] * 20)
    images = torch.rand(40, 1, 6, 6, 6, generator=generator) + 0.5 * labels.view(-1, 1, 1, 1, 1)
    for name in ("svm", "random_forest", "knn", "mlp"):
        model = build_classifier(f"sklearn-{name}").pipeline(seed=0).fit(downsample(images[:30]), labels[:30].numpy())
        assert (model.predict(downsample(images[30:])) == labels[30:].numpy()).mean() >= 0.9, name


def test_svm_probabilities_follow_its_decision_function_and_never_invert_its_labels():
    # 40 weakly separable images: cross-validated Platt calibration can invert such an SVM; σ(f) cannot
    generator = torch.Generator().manual_seed(3)
    labels = torch.tensor([0, 1] * 20)
    images = torch.rand(40, 1, 6, 6, 6, generator=generator) + 0.15 * labels.view(-1, 1, 1, 1, 1)
    svm = build_classifier("sklearn-svm")
    model = svm.pipeline(seed=0).fit(downsample(images), labels.numpy())
    features = downsample(torch.rand(25, 1, 6, 6, 6, generator=generator))
    probabilities = svm.probabilities(model, features)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), model.predict(features))
    decision = model.decision_function(features)
    assert (np.diff(probabilities[np.argsort(decision), 1]) >= 0).all()   # monotone in f


def test_random_search_keeps_the_baseline_as_trial_zero_and_returns_the_best():
    generator = torch.Generator().manual_seed(2)
    labels = torch.tensor([0, 1] * 12)
    images = torch.rand(24, 1, 8, 8, 8, generator=generator) + 0.8 * labels.view(-1, 1, 1, 1, 1)
    groups = np.repeat(np.arange(12), 2)  # two images per subject, never split across folds
    base = ClassifierTraining(epochs=2, batch_size=6, learning_rate=1e-3)
    best, trials = random_search(images, labels, groups, trials=3, folds=2, epochs=2, seed=0, base=base)
    assert trials.loc[0, "channels"] == [8, 16, 32, 64, 128] and trials.loc[0, "learning_rate"] == 1e-3
    chosen = trials.loc[trials["cv_balanced_accuracy"].idxmax()]
    assert list(best.channels) == list(chosen["channels"]) and best.learning_rate == chosen["learning_rate"]
    drawn = draw_architecture(np.random.default_rng(5))
    assert 3 <= len(drawn.channels) <= 5 and 1e-5 <= drawn.learning_rate <= 1e-3
    assert CNNArchitecture.from_dict(drawn.to_dict()) == drawn


def test_report_names_the_configured_memorization_quantile():
    from medaug.study.report import summary_markdown

    train, labels = torch.rand(20, 1, 3, 3, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1] * 10)
    table = memorization_table({"prior": {0: train[:4], 1: train[4:8]}}, train, labels, ("CN", "AD"), 0.1)
    assert (table["quantile"] == 0.1).all()
    empty = pd.DataFrame()
    text = summary_markdown("s", pd.DataFrame(columns=["test_set"]), empty, empty, table, [])
    assert "τ is the 10% quantile of the training images' leave-one-out nearest-neighbour distances" in text
    assert "5%" not in text


def test_one_run_is_reported_as_one_run_not_as_zero_spread():
    from medaug.study.report import _percent

    assert _percent(0.75, float("nan")) == "75.0 (1 run)"
    assert _percent(0.75, 0.05) == "75.0 ± 5.0" and _percent(float("nan"), float("nan")) == "n/a"
