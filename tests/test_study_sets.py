import numpy as np
import pytest
import torch

from medaug.data.volumes import AugmentedVolumes, Volumes
from medaug.errors import BalanceError, ConfigError
from medaug.study.audit import paired_bootstrap_ci
from medaug.study.training_sets import build_training_set


def _real():
    images = torch.rand(6, 1, 12, 12, 12, generator=torch.Generator().manual_seed(0))
    return images, torch.tensor([0, 0, 0, 0, 1, 1])


def test_conditions_are_balanced_and_flag_synthetic_images():
    real, labels = _real()
    synthetic = {0: torch.rand(10, 1, 12, 12, 12), 1: torch.rand(10, 1, 12, 12, 12)}
    mixed = build_training_set(real, labels, "real+synthetic", synthetic=synthetic, synthetic_per_class=5)
    assert len(mixed.images) == 16 and int(mixed.synthetic.sum()) == 10
    assert (mixed.labels[mixed.synthetic] == 0).sum() == (mixed.labels[mixed.synthetic] == 1).sum() == 5
    only = build_training_set(real, labels, "synthetic", synthetic=synthetic, synthetic_per_class=3)
    assert bool(only.synthetic.all()) and len(only.images) == 6
    with pytest.raises(BalanceError, match="class 0: 10 synthetic images, 20 requested"):
        build_training_set(real, labels, "synthetic", synthetic=synthetic, synthetic_per_class=20)
    with pytest.raises(ConfigError, match="unknown condition .gan."):
        build_training_set(real, labels, "gan")


def test_classic_augmentation_is_seeded_and_changes_images():
    real, labels = _real()
    first = build_training_set(real, labels, "classic", copies=2, seed=3)
    again = build_training_set(real, labels, "classic", copies=2, seed=3)
    assert len(first.images) == 18 and torch.equal(first.images.load(), again.images.load())
    assert torch.equal(first.labels[6:], labels.repeat(2))
    assert not torch.allclose(first.images.take(np.arange(6, 12)).load(), real)
    # each copy is drawn from its own seed: the same image whatever the order it is read in
    rows = np.array([17, 6, 11])
    assert torch.equal(first.images.batch(rows), first.images.load()[rows])


def test_augmented_copies_are_drawn_once_and_equal_with_or_without_the_cache():
    real, _ = _real()
    calls = []

    def shift(image):
        calls.append(1)
        return image + torch.rand(())

    cached = AugmentedVolumes(Volumes.of(real), 2, seed=5, transform=shift)
    rows = np.array([3, 7, 11])
    first = cached[rows]
    assert torch.equal(cached[rows[::-1]], first.flip(0)) and len(calls) == 3     # second read: from memory
    uncached = AugmentedVolumes(Volumes.of(real), 2, seed=5, transform=shift, cache_bytes=0)
    assert torch.equal(uncached[rows], first) and torch.equal(uncached[rows], first) and len(calls) == 9
    one_image = real[0].element_size() * real[0].nelement()
    bounded = AugmentedVolumes(Volumes.of(real), 2, seed=5, transform=shift, cache_bytes=one_image)
    bounded[rows]
    assert len(bounded._cache) == 1                                              # the budget holds


def test_paired_bootstrap_interval():
    assert paired_bootstrap_ci(np.full(20, 0.7), np.full(20, 0.6)) == pytest.approx((0.1, 0.1, 0.1))
    rng = np.random.default_rng(0)
    reference = rng.normal(0.65, 0.05, 40)
    mean, low, high = paired_bootstrap_ci(reference + 0.05 + rng.normal(0, 0.02, 40), reference)
    assert low < mean < high and low > 0.03 and high < 0.07
