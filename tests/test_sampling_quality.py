"""Sample-quality measures against hand-computed cases, and the collapse / memorization warnings."""

import math

import pytest
import torch

from medaug.sampling.quality import (copy_audit, diversity, mean_pairwise_distance, nearest_training_shares, novel,
                                     precision_recall, quality_warnings, sample_quality)


def points(*rows):
    return torch.tensor(rows, dtype=torch.float64)[:, None, :]  # (N, C=1, 2) "images"


def test_distances_diversity_and_nearest_neighbour_shares_by_hand():
    training = points([0, 0], [3, 0], [0, 4])       # pairwise 3, 4, 5: mean 4
    synthetic = points([0, 0.5], [0.1, 0], [3, 1])  # pairwise √(0.01+0.25), √(9+0.25)... below
    expected = (math.sqrt(0.26) + math.sqrt(9 + 0.25) + math.sqrt(2.9**2 + 1)) / 3
    assert mean_pairwise_distance(training) == pytest.approx(4.0)
    assert diversity(synthetic, training) == pytest.approx(expected / 4.0)
    shares = nearest_training_shares(synthetic, training)  # nearest: 0, 0, 1
    assert shares == {"coverage": pytest.approx(2 / 3), "max_nn_share": pytest.approx(2 / 3)}


def test_precision_and_recall_with_k_nearest_neighbour_balls():
    # training on a line at 0, 1, 2, 3: with k = 1 every ball has radius 1
    training = points([0, 0], [1, 0], [2, 0], [3, 0])
    synthetic = points([0.5, 0], [1.5, 0.5], [10, 0])  # two inside the training balls, one far away
    result = precision_recall(synthetic, training, k=1)
    assert result["precision"] == pytest.approx(2 / 3)
    # synthetic 1-NN radii: ‖s0 − s1‖ = √1.25 for both near ones, 8.5... for the far one
    # training images within a synthetic ball: 0, 1 (s0, radius 1.118), 1, 2 (s1), all (s2, radius 8.57)
    assert result["recall"] == pytest.approx(1.0)
    near_only = precision_recall(points([0.5, 0], [1.5, 0.5]), training, k=1)
    # s0 ball radius √1.25 ≈ 1.118 holds 0, 1; s1 ball holds 1, 2 (‖(2,0) − (1.5,0.5)‖ ≈ 0.71): 3 of 4
    assert near_only["recall"] == pytest.approx(3 / 4) and near_only["precision"] == 1.0


def test_copies_averages_and_novel_samples_by_hand():
    # leave one out: nearest 1, 1, 2, 3 (τ = 1.5 at the median); median distance to the others 3, 2, 3, 5 (τ_typical 3)
    references = points([0, 0], [1, 0], [3, 0], [6, 0])
    queries = points([0.1, 0], [0.5, 0], [4.5, 0], [20, 0])
    audit = copy_audit(queries, references, quantile=0.5)
    assert audit["threshold"] == pytest.approx(1.5) and audit["typical_threshold"] == pytest.approx(3.0)
    samples = audit["samples"]
    # (0.1, 0): 0.1 from [0, 0] and 0.9 from [1, 0]: near one, far from the next, a copy; (0.5, 0): 0.5 from
    # both, an average
    # (4.5, 0): 1.5 from [3, 0] and [6, 0], not strictly within τ, but its median distance 2.5 < 3: a blend
    # (20, 0): far from everything, novel
    assert samples["kind"] == ["copy", "average", "average", "novel"]
    assert samples["median_distance"].tolist() == pytest.approx([1.9, 1.5, 2.5, 18])
    assert samples["nearest_distance"].tolist() == pytest.approx([0.1, 0.5, 1.5, 14])
    assert samples["second_distance"].tolist() == pytest.approx([0.9, 0.5, 1.5, 17])
    assert samples["nearest_training"][0] == 0 and samples["nearest_training"][3] == 3
    assert samples["training_within_threshold"].tolist() == [2, 2, 0, 0]
    assert audit["average_fraction"] == 0.5 and audit["novel_fraction"] == 0.25 and audit["copy_fraction"] == 0.25
    # the references leave one out: [0, 0] and [1, 0] are within τ of each other and twice as far from their
    # next neighbour: copies
    assert audit["real_copy_fraction"] == 0.5 and audit["real_average_fraction"] == 0.0
    assert audit["real_nn_distance_median"] == pytest.approx(1.5) and audit["nn_distance_median"] == pytest.approx(1.0)
    copies = copy_audit(points([6.2, 0], [5.9, 0]), references, quantile=0.5)
    assert copies["samples"]["kind"] == ["copy", "copy"] and copies["copy_fraction"] == 1.0


def test_the_novelty_filter_keeps_samples_no_nearer_than_the_quantile():
    references = points([0, 0], [1, 0], [3, 0], [6, 0])
    kept, threshold = novel(points([0.1, 0], [4.5, 0], [6.5, 0]), references, quantile=0.5)
    assert threshold == pytest.approx(1.5) and kept.tolist() == [False, True, False]


def test_a_pool_of_class_means_is_an_average_not_a_copy_and_copies_are_copies(digits):
    training = digits[:30]
    noise = torch.Generator().manual_seed(0)
    means = training.mean(0, keepdim=True).repeat(40, 1, 1, 1) + 0.01 * torch.randn(40, 1, 8, 8, generator=noise)
    collapsed = sample_quality(means, training)
    assert collapsed["average_fraction"] == 1.0 and collapsed["copy_fraction"] == 0.0
    assert any("averaged pool" in w for w in quality_warnings(collapsed))
    assert not any("memorized" in w for w in quality_warnings(collapsed))
    copied = sample_quality(training[:20] + 0.001 * torch.randn(20, 1, 8, 8, generator=noise), training)
    assert copied["copy_fraction"] == 1.0 and copied["average_fraction"] == 0.0
    assert any("memorized pool" in w for w in quality_warnings(copied))


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images / 16.0, dtype=torch.float32)[:, None]
    return images[data.target == 5]


def test_a_repeated_image_pool_is_flagged_collapsed_and_memorized(digits):
    training = digits[:30]
    repeated = training[[4] * 60] + 0.001 * torch.randn(60, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    quality = sample_quality(repeated, training, reconstructions=training)
    assert quality["diversity"] < 0.05 and quality["max_nn_share"] == 1.0 and quality["coverage"] == pytest.approx(1 / 30)
    warnings = quality_warnings(quality)
    assert any("diversity" in w for w in warnings) and any("share one nearest" in w for w in warnings)
    assert any("memorized" in w for w in warnings)


def test_held_out_real_images_raise_no_warning(digits):
    training, held_out = digits[:30], digits[30:90]
    quality = sample_quality(held_out, training)
    assert 0.85 < quality["diversity"] < 1.2 and quality["max_nn_share"] < 0.5  # hubness: 0.27 here
    assert quality["real_max_nn_share"] < 0.5
    assert abs(quality["copy_fraction"] + quality["average_fraction"] - 0.05) < 0.1  # as often as real images
    assert quality_warnings(quality) == []


def test_precision_recall_of_a_single_sample_is_nan_not_an_error():
    from medaug.sampling.quality import precision_recall

    training = torch.rand(5, 1, 4, 4)
    scores = precision_recall(training[:1] + 0.01, training)
    assert math.isnan(scores["recall"]) and 0 <= scores["precision"] <= 1
