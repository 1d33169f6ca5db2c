"""Adaptive HMC and random walk (dual averaging), chain diagnostics, sampling scale and copy controls."""

import math

import numpy as np
import pytest
import torch

from medaug.sampling.adaptation import adapted_step, dual_averaging_start, dual_averaging_update
from medaug.sampling.diagnostics import (acceptance_warning, chain_diagnostics, effective_sample_size,
                                         split_r_hat, start_basin_fraction)
from medaug.sampling.hmc import hmc


def standard_normal(z):
    return -0.5 * z.pow(2).sum(1), -z


@pytest.mark.parametrize("per_chain", [False, True])
@pytest.mark.parametrize("initial", [2.5, 1e-3])
def test_dual_averaging_reaches_its_target_acceptance_and_keeps_the_gaussian_invariant(per_chain, initial):
    d = 5
    start = torch.randn(2000, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result = hmc(standard_normal, start, steps=60, leapfrog_steps=5, step_size=initial,
                 generator=torch.Generator().manual_seed(1), warmup=150, target_acceptance=0.7, per_chain=per_chain,
                 step_jitter=0.2)
    rate = float(result.acceptance.mean())
    assert result.step_size.shape == (2000,) and float(result.step_size.min()) > 0
    if per_chain:  # each chain adapts on its own noisy α: it ends above the target (documented in hmc)
        assert 0.7 <= rate <= 0.87 and float(result.step_size.std()) > 0
    else:
        assert rate == pytest.approx(0.7, abs=0.04)
        assert torch.unique(result.step_size).numel() == 1  # one step for all chains
    samples = result.samples
    assert float(samples.mean(0).abs().max()) < 0.08
    torch.testing.assert_close(samples.var(0), torch.ones(d, dtype=torch.float64), rtol=0.1, atol=0)
    assert float(samples.pow(4).mean()) == pytest.approx(3.0, rel=0.12)  # E z⁴ = 3 for N(0, 1)


def test_dual_averaging_equations_move_the_step_toward_the_target():
    state = dual_averaging_start(torch.tensor([0.1]))
    assert float(state.mu) == pytest.approx(math.log(1.0))  # μ = log(10 ε₀)
    low = dual_averaging_update(state, torch.tensor([0.0]), 0.8)   # nothing accepted: smaller steps
    high = dual_averaging_update(state, torch.tensor([1.0]), 0.8)  # everything accepted: larger steps
    assert float(low.log_step) < float(high.log_step)
    # m = 1: H̄ = (δ − α)/(1 + t₀), log ε = μ − √1/γ H̄, log ε̄ = log ε (weight 1)
    assert float(low.statistic) == pytest.approx(0.8 / 11)
    assert float(low.log_step) == pytest.approx(-0.8 / 11 / 0.05)
    assert float(adapted_step(low)) == pytest.approx(math.exp(-0.8 / 11 / 0.05))
    assert float(adapted_step(state)) == pytest.approx(0.1)  # no warm-up: the initial step


def test_a_fixed_step_without_warmup_is_the_plain_sampler():
    start = torch.zeros(50, 2, dtype=torch.float64)
    result = hmc(standard_normal, start, steps=3, leapfrog_steps=2, step_size=0.2,
                 generator=torch.Generator().manual_seed(0), trace_chains=4)
    assert torch.all(result.step_size == 0.2) and result.trace.shape == (3, 4, 2)


def test_effective_sample_size_is_zero_or_tiny_for_frozen_chains_and_r_hat_flags_them():
    frozen_apart = np.tile(np.arange(8.0)[None, :, None], (500, 1, 2))  # 8 chains that never move
    ess = effective_sample_size(frozen_apart)
    assert np.all(ess <= 8)  # not 8 × 500
    assert np.all(np.isinf(split_r_hat(frozen_apart)))
    assert np.all(effective_sample_size(np.zeros((500, 8, 2))) == 0)
    rng = np.random.default_rng(0)
    mixing = rng.standard_normal((1000, 8, 3))
    np.testing.assert_allclose(split_r_hat(mixing), 1.0, atol=0.02)
    stuck = mixing + 3.0 * np.arange(8)[None, :, None]  # each chain mixes in its own basin only
    assert np.all(split_r_hat(stuck) > 2) and np.all(effective_sample_size(stuck) < 0.05 * 8000)


def test_start_basin_fraction_and_acceptance_warnings():
    centroids = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    start = torch.tensor([[0.1, 0.0], [9.0, 0.0], [0.0, 1.0], [10.0, 1.0]])
    final = torch.tensor([[0.2, 0.0], [1.0, 0.0], [9.5, 0.0], [10.0, 0.0]])
    assert start_basin_fraction(start, final, centroids) == 0.5
    assert "barely move" in acceptance_warning(0.01) and "too small" in acceptance_warning(0.999)
    assert acceptance_warning(0.7) is None


def test_chain_diagnostics_of_a_frozen_sampler_warn():
    start = torch.zeros(32, 2, dtype=torch.float64)
    result = hmc(standard_normal, start, steps=20, leapfrog_steps=3, step_size=50.0,
                 generator=torch.Generator().manual_seed(0), trace_chains=16)
    diagnostics = chain_diagnostics(result)
    assert diagnostics["acceptance_rate"] < 0.05 and diagnostics["warnings"]
    assert diagnostics["ess_per_draw"] < 0.1


def _trained_digit_model(epochs=800):
    """An RHVAE whose encoder and decoder are a VAE trained briefly on 20 images of digit 3 (a VAE
    trains in seconds; the metric network stays at its initialisation, L ≈ I): an informative
    posterior for the sampler tests. ``epochs=0``: untrained, i.e. collapsed."""
    from sklearn.datasets import load_digits

    from medaug.generative.config import GeneratorConfig
    from medaug.generative.models import build_model

    digits = load_digits()
    images = torch.tensor(digits.images[digits.target == 3][:20] / 16.0, dtype=torch.float32)[:, None]
    torch.manual_seed(0)
    config = dict(input_shape=(1, 8, 8), latent_dim=3, hidden=(64,))
    vae = build_model(GeneratorConfig(model="vae", **config))
    rhvae = build_model(GeneratorConfig(model="rhvae", options={"metric_hidden": 32, "regularization": 1e-3}, **config))
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-3)
    for _ in range(epochs):
        optimizer.zero_grad()
        vae.loss(images).backward()
        optimizer.step()
    rhvae.load_state_dict(vae.state_dict(), strict=False)
    rhvae.eval().update_metric([images])
    return rhvae, images


@pytest.fixture(scope="module")
def digit_model():
    return _trained_digit_model()


def test_collapsed_generators_are_refused_and_trained_ones_pass(digit_model):
    from medaug.errors import UninformativeGeneratorError
    from medaug.sampling.posterior_check import posterior_informativeness
    from medaug.sampling.samplers import build_sampler

    model, images = digit_model
    stats = posterior_informativeness(model, images)
    assert stats["active_dimensions"] >= 1 and stats["decoded_spread"] > 0.1
    build_sampler("prior").fit(model, images)  # no error
    untrained, _ = _trained_digit_model(epochs=0)
    with pytest.raises(UninformativeGeneratorError, match="posterior is uninformative"):
        build_sampler("rhvae-hmc").fit(untrained, images)
    build_sampler("jitter").fit(untrained, images)  # the model-free control checks nothing


def test_sampling_temperature_and_support_follow_the_code_spacing(digit_model):
    from medaug.sampling.posterior_metric import max_min_spacing
    from medaug.sampling.samplers import build_sampler

    model, images = digit_model
    auto = build_sampler("rhvae-hmc", steps=20, warmup=20).fit(model, images)
    centroids = model.centroids
    assert auto.temperature == pytest.approx(max_min_spacing(centroids))
    assert bool(auto.inside(centroids).all())
    assert auto.radius == pytest.approx(float((centroids - centroids.mean(0)).norm(dim=1).max()) + 2 * auto.temperature)
    thesis = build_sampler("rhvae-hmc", temperature="model", support="thesis").fit(model, images)
    assert thesis.temperature == model.options.temperature
    assert thesis.radius == pytest.approx(2 * float(centroids.norm(dim=1).max()))
    fixed = build_sampler("rhvae-hmc", temperature=0.7).fit(model, images)
    assert fixed.temperature == 0.7
    samples = auto.sample(64, seed=0)
    assert 0.5 <= samples.diagnostics["acceptance_rate"] <= 0.95
    assert {"step_size", "split_r_hat", "ess_per_draw", "start_basin_fraction"} <= set(samples.diagnostics)
    with pytest.raises(Exception, match="temperature"):
        build_sampler("rhvae-hmc", temperature="hot")
    with pytest.raises(Exception, match="target_acceptance"):
        build_sampler("geometric", target_acceptance=1.5)


def test_random_walk_adapts_its_proposal_scale(digit_model):
    from medaug.sampling.samplers import build_sampler

    model, images = digit_model
    for sigma in (5.0, 1e-3):
        walk = build_sampler("random-walk", steps=30, warmup=60, sigma=sigma, target_acceptance=0.5).fit(model, images)
        result = walk.sample(64, seed=1)
        assert 0.3 < result.diagnostics["acceptance_rate"] < 0.7
        assert result.diagnostics["sigma"] != sigma


def test_copy_controls_reencode_or_jitter_the_training_images(digit_model):
    from medaug.sampling.samplers import build_sampler

    model, images = digit_model
    jitter = build_sampler("jitter", noise_std=0.05).fit(model, images)
    first, again = jitter.sample(12, seed=3), jitter.sample(12, seed=3)
    torch.testing.assert_close(first.images, again.images, rtol=0, atol=0)
    index = first.latents[:, 0].long()
    residual = first.images - images[index]
    assert 0.02 < float(residual.std()) < 0.06 and float(first.images.min()) >= 0 and float(first.images.max()) <= 1
    none = build_sampler("jitter", noise_std=0.0).fit(model, images).sample(4, seed=0)
    torch.testing.assert_close(none.images, images[none.latents[:, 0].long()])
    posterior = build_sampler("posterior").fit(model, images).sample(4000, seed=0)
    means, log_vars = model.encoder(images)
    # the codes are a mixture of the posteriors: their mean is the mean of the posterior means
    torch.testing.assert_close(posterior.latents.mean(0), means.mean(0).detach(), atol=0.1, rtol=0)
