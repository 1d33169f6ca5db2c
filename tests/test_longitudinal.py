import numpy as np
import pandas as pd
import pytest
import torch

from medaug.errors import InputDataError
from medaug.longitudinal.sequences import AgeScale, build_sequences, drop_visits
from medaug.longitudinal.trajectory import (
    FeatureTrajectoryModel, TrajectoryConfig, TrajectorySampler, gaussian_kl, linear_trajectory,
    train_trajectory_model)


def test_linear_trajectory_is_equation_5_1():
    eta, tau = torch.tensor([0.3, -0.5]), torch.tensor([0.2, 0.7])
    lam, times = torch.tensor([[1.0, 2.0], [-1.0, 0.5]]), torch.tensor([[0.0, 0.5, 1.0], [0.1, 0.2, 0.3]])
    points = linear_trajectory(eta, tau, lam, times)
    for i in range(2):
        for j in range(3):
            expected = torch.cat([torch.exp(eta[i]) * (times[i, j] - tau[i]) * torch.ones(1), lam[i]])
            assert torch.allclose(points[i, j], expected)


def test_gaussian_kl_matches_torch_distributions():
    mean, log_var = torch.randn(5, 3), torch.randn(5, 3)
    for std in (1.0, 0.3, 2.0):
        expected = torch.distributions.kl_divergence(
            torch.distributions.Normal(mean, torch.exp(0.5 * log_var)), torch.distributions.Normal(0.0, std)).sum(-1)
        assert torch.allclose(gaussian_kl(mean, log_var, std), expected, atol=1e-5)


def _cohort():
    rows = [("sub-A", "ses-M012", 71.0), ("sub-A", "ses-M000", 70.0), ("sub-A", "ses-M024", 72.0),
            ("sub-B", "ses-M000", 80.0), ("sub-B", "ses-M024", 82.0)]
    return pd.DataFrame(rows, columns=["participant_id", "session_id", "age"])


def test_sequences_are_ordered_by_age_padded_and_masked():
    values = torch.arange(5, dtype=torch.float32)[:, None]
    sequences, scale = build_sequences(_cohort(), values)
    assert sequences.participants == ["sub-A", "sub-B"]
    assert sequences.values[0, :, 0].tolist() == [1.0, 0.0, 2.0]  # M000, M012, M024 rows
    assert sequences.mask.tolist() == [[True, True, True], [True, True, False]]
    assert torch.allclose(sequences.times[1, :2], torch.tensor([10 / 12, 1.0]))
    assert np.isclose(scale.to_age(scale.to_time(75.5)), 75.5)
    with pytest.raises(InputDataError, match="sub-B ses-M024 has no age"):
        build_sequences(_cohort().assign(age=[71.0, 70.0, 72.0, 80.0, np.nan]), values)
    with pytest.raises(InputDataError, match="one value per image"):
        build_sequences(_cohort(), values[:3])
    with pytest.raises(InputDataError, match="span more than one value"):
        AgeScale.fit([70.0, 70.0])


def _linear_population(n, seed, visits=6, features=6):
    """Features that follow Eq. 5.1 exactly through a fixed random linear map, plus small noise."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(3, features, generator=torch.Generator().manual_seed(99))
    eta, tau = 0.3 * torch.randn(n, generator=generator), 0.2 * torch.randn(n, generator=generator) + 0.3
    lam = torch.randn(n, 2, generator=generator)
    times = torch.linspace(0, 1, visits).expand(n, -1) + 0.05 * torch.rand(n, visits, generator=generator)
    values = linear_trajectory(eta, tau, lam, times) @ mixing + 0.02 * torch.randn(n, visits, features, generator=generator)
    rows = pd.DataFrame([{"participant_id": f"sub-{i:03d}", "session_id": f"ses-M{12 * j:03d}", "age": 60 + 20 * float(times[i, j])}
                         for i in range(n) for j in range(visits)])
    return rows, values.reshape(n * visits, features)


def test_masked_visits_do_not_reach_the_loss():
    rows, values = _linear_population(4, 0)
    sequences, _ = build_sequences(rows, values)
    hidden, hide = drop_visits(sequences, 0.5, seed=1)
    assert hide.any() and not hide[:, 0].any()
    model = FeatureTrajectoryModel(TrajectoryConfig(feature_dim=6, trajectory_dim=3, hidden=16, rnn_layers=1))
    before = model.loss(hidden, torch.Generator().manual_seed(0))
    changed = hidden.values.clone()
    changed[hide] = 1e3  # whatever sits at a missing visit is never read
    hidden.values = changed
    assert torch.equal(model.loss(hidden, torch.Generator().manual_seed(0)), before)


@pytest.mark.slow
def test_trajectory_model_imputes_better_than_carry_forward_and_generates():
    rows, values = _linear_population(160, 0)
    sequences, scale = build_sequences(rows, values)
    train = build_sequences(rows[rows["participant_id"] < "sub-120"], values[: 120 * 6], scale)[0]
    test = build_sequences(rows[rows["participant_id"] >= "sub-120"], values[120 * 6:], scale)[0]
    model = FeatureTrajectoryModel(TrajectoryConfig(feature_dim=6, trajectory_dim=3, hidden=64, rnn_layers=1))
    model, log = train_trajectory_model(model, train, test, epochs=150, learning_rate=3e-3, batch_size=32,
                                        visit_dropout=0.4, seed=0)
    assert log[-1]["val_loss"] < log[0]["val_loss"] / 3
    observed, hide = drop_visits(test, 0.4, seed=3)
    imputed = model.predict(observed, observed.times)
    model_error = ((imputed - test.values) ** 2).sum(-1)[hide].mean()
    # carry forward: the last observed visit before each missing one
    carried = observed.values.clone()
    for j in range(1, carried.shape[1]):
        carried[:, j] = torch.where(observed.mask[:, j, None], carried[:, j], carried[:, j - 1])
    carry_error = ((carried - test.values) ** 2).sum(-1)[hide].mean()
    assert model_error < 0.4 * carry_error
    sampler = TrajectorySampler(model).fit(train)
    synthetic = sampler.new_subjects(20, torch.linspace(0, 1, 5), seed=0)
    assert synthetic.shape == (20, 5, 6) and torch.isfinite(synthetic).all()
    assert torch.equal(synthetic, sampler.new_subjects(20, torch.linspace(0, 1, 5), seed=0))
    futures = sampler.futures(observed, 3, torch.linspace(0, 1, 4), seed=1)
    assert futures.shape == (len(observed), 3, 4, 6)
