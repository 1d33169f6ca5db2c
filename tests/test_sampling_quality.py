"""Sample-quality measures against hand-computed cases, and the collapse / memorization warnings."""

import math

import pytest
import torch

from medaug.sampling.quality import (diversity, fraction_below_quantile, mean_pairwise_distance,
                                     nearest_training_shares, precision_recall, quality_warnings, sample_quality)


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


def test_fraction_below_the_quantile_of_leave_one_out_distances():
    references = points([0, 0], [1, 0], [3, 0], [6, 0])  # leave-one-out NN distances 1, 1, 2, 3
    result = fraction_below_quantile(points([0.1, 0], [4.5, 0]), references, quantile=0.5,
                                     held_out=points([2.0, 0], [1.2, 0]))
    assert result["threshold"] == pytest.approx(1.5)
    assert result["fraction"] == 0.5 and result["held_out_fraction"] == 1.0


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images / 16.0, dtype=torch.float32)[:, None]
    return images[data.target == 5]


def test_a_repeated_image_pool_is_flagged_collapsed_and_memorized(digits):
    training, held_out = digits[:30], digits[30:80]
    repeated = training[[4] * 60] + 0.001 * torch.randn(60, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    quality = sample_quality(repeated, training, held_out=held_out, reconstructions=training,
                             held_out_reconstructions=held_out)
    assert quality["diversity"] < 0.05 and quality["max_nn_share"] == 1.0 and quality["coverage"] == pytest.approx(1 / 30)
    warnings = quality_warnings(quality)
    assert any("diversity" in w for w in warnings) and any("share one nearest" in w for w in warnings)
    assert any("memorized" in w for w in warnings)


def test_held_out_real_images_raise_no_warning(digits):
    training, held_out, reference = digits[:30], digits[30:90], digits[90:150]
    quality = sample_quality(held_out, training, held_out=reference)
    assert 0.85 < quality["diversity"] < 1.2 and quality["max_nn_share"] < 0.5  # hubness: 0.27 here
    assert quality["held_out_max_nn_share"] < 0.5 and 0.85 < quality["held_out_diversity"] < 1.2
    assert quality_warnings(quality) == []


def test_precision_recall_of_a_single_sample_is_nan_not_an_error():
    from medaug.sampling.quality import precision_recall

    training = torch.rand(5, 1, 4, 4)
    scores = precision_recall(training[:1] + 0.01, training)
    assert math.isnan(scores["recall"]) and 0 <= scores["precision"] <= 1
