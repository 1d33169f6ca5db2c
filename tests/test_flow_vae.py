"""Longitudinal VAE with flows (thesis ch. 6): Eq. 6.4-6.5 against autograd and quadrature, Alg. 6
with missing visits, Alg. 7 / Eq. 6.8 against a brute-force search, IS likelihood against the frame
VAE, checkpoint resume."""

import math

import pytest
import torch

from medaug.errors import ConfigError
from medaug.generative.config import GeneratorConfig
from medaug.generative.likelihood import importance_log_likelihood
from medaug.longitudinal.flow_vae import (
    FlowTraining, FlowVAEConfig, LongitudinalFlowVAE, random_observed, train_flow_vae)


def _model(latent_dim=2, visits=4, model="vae", posterior="gaussian", seed=0):
    torch.manual_seed(seed)
    generator = GeneratorConfig(input_shape=(1, 4, 4), model=model, latent_dim=latent_dim, hidden=(16,),
                                options={"pseudo_inputs": 3} if model == "vamp" else {})
    return LongitudinalFlowVAE(FlowVAEConfig(generator, visits=visits, made_hidden=16, posterior=posterior)).eval()


def _data(n=5, visits=4, seed=1):
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(n, visits, 1, 4, 4, generator=generator)
    mask = torch.rand(n, visits, generator=generator) > 0.3
    mask[:, 0] = True
    return values, mask


def test_propagation_follows_the_flows_from_any_anchor_with_the_inverse_log_determinant():
    model = _model(latent_dim=3)
    z_anchor = torch.randn(4, 3)
    anchor = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        latents, log_det = model.propagate(z_anchor, anchor)
    assert torch.allclose(latents[torch.arange(4), anchor], z_anchor, atol=1e-5)
    for l in range(1, 4):  # Eq. 6.3 holds along the whole sequence, before and after the anchor
        with torch.no_grad():
            assert torch.allclose(model.transitions[l - 1]()(latents[:, l - 1]), latents[:, l], atol=1e-4)
    for i in range(4):  # Σ_{l≤j} log|det ∂f_l⁻¹/∂z_l| = −Σ_{l≤j} log|det ∂f_l/∂z_{l−1}| by autograd
        expected = sum(-torch.linalg.slogdet(torch.autograd.functional.jacobian(
            model.transitions[l - 1](), latents[i, l - 1]))[1] for l in range(1, int(anchor[i]) + 1))
        assert float(log_det[i]) == pytest.approx(float(expected), abs=1e-4)


@pytest.mark.parametrize("anchor", [1, 3])
def test_the_prior_of_a_later_visit_is_a_normalized_density(anchor):
    """p(z_j) = p(z_0) Π |det ∂f_l⁻¹/∂z_l| (Eq. 6.4) integrates to one (quadrature in d = 2)."""
    model = _model(latent_dim=2)
    axis = torch.linspace(-9, 9, 241)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        latents, log_det = model.propagate(grid, torch.full((len(grid),), anchor))
        density = (model.frame.log_prior(latents[:, 0]) + log_det).exp()
    assert float(density.sum() * (axis[1] - axis[0]) ** 2) == pytest.approx(1.0, abs=0.01)


@torch.no_grad()
def test_alg6_loss_by_hand_and_missing_visits_never_count():
    model = _model()
    values, mask = _data()
    generator = torch.Generator().manual_seed(3)
    anchor = random_observed(mask, generator)
    assert mask[torch.arange(len(mask)), anchor].all()
    z_anchor, log_q = model.encode(values[torch.arange(len(mask)), anchor], generator)
    latents, log_det = model.propagate(z_anchor, anchor)
    reconstruction = torch.stack([model.frame.log_px_given_z(values[:, l], model.frame.decoder(latents[:, l]))
                                  for l in range(4)], 1)
    expected = -((reconstruction * mask).sum(1) / mask.sum(1) + model.frame.log_prior(latents[:, 0]) + log_det
                 - log_q).mean()
    assert float(model.loss(values, mask, torch.Generator().manual_seed(3))) == pytest.approx(float(expected), rel=1e-5)
    garbage = torch.where(mask[..., None, None, None], values, torch.full_like(values, 0.77))
    assert float(model.loss(garbage, mask, torch.Generator().manual_seed(3))) == pytest.approx(
        float(expected), rel=1e-5)


def test_random_anchor_is_uniform_over_observed_visits():
    mask = torch.tensor([[True, False, True, True]]).expand(30000, -1)
    counts = torch.bincount(random_observed(mask, torch.Generator().manual_seed(0)), minlength=4) / 30000
    assert counts[1] == 0
    assert torch.allclose(counts[[0, 2, 3]], torch.full((3,), 1 / 3), atol=0.015)


def test_single_observed_visit_likelihood_is_the_frame_vae_likelihood():
    """With only the first visit observed, no flow enters: the IS estimate is the VAE's log p(x_0)."""
    model = _model()
    values, _ = _data(n=3)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[:, 0] = True
    joint = model.joint_log_likelihood(values, mask, samples=4000, seed=0)
    frame = importance_log_likelihood(model.frame, values[:, 0], samples=4000, seed=1)
    assert torch.allclose(joint, frame, atol=0.02)


@pytest.mark.parametrize("variant", [("vamp", "gaussian"), ("vae", "iaf")])
def test_variants_give_finite_likelihoods_that_tighten_with_more_samples(variant):
    model = _model(model=variant[0], posterior=variant[1])
    values, mask = _data()
    one = torch.stack([model.joint_log_likelihood(values, mask, samples=1, seed=s) for s in range(200)]).mean(0)
    many = model.joint_log_likelihood(values, mask, samples=200, seed=0)
    assert torch.isfinite(many).all()
    assert (many > one).all()  # Jensen: E log p̂₁ ≤ log E p̂ ≈ log p̂₂₀₀


def test_imputation_keeps_the_anchor_that_best_explains_the_observed_visits():
    model = _model()
    values, mask = _data(n=6)
    imputed, chosen = model.impute(values, mask, draws=0)
    scores = []
    for j in range(4):
        z, _ = model.encode(values[:, j], mean_only=True)
        latents, _ = model.propagate(z, torch.full((6,), j))
        score = (model.visit_log_likelihoods(values, latents) * mask).sum(1)
        scores.append(torch.where(mask[:, j], score, torch.full_like(score, -math.inf)))
        if j == 0:
            assert torch.allclose(imputed[chosen == 0], model.decode(latents)[chosen == 0])
    assert torch.equal(chosen, torch.stack(scores, 1).argmax(1))


def test_training_lowers_the_loss_and_resumes_exactly(tmp_path):
    values, mask = _data(n=12, seed=4)
    settings = FlowTraining(epochs=6, warmup_epochs=2, batch_size=4, milestones=(3,), seed=5)
    straight, log = train_flow_vae(_model(seed=2), (values, mask), (values, mask), settings)
    assert min(e["val_loss"] for e in log[3:]) < log[2]["val_loss"]  # flow epochs improve on the first one
    checkpoint = tmp_path / "flow.pt"
    half = FlowTraining(epochs=3, warmup_epochs=2, batch_size=4, milestones=(3,), seed=5)
    train_flow_vae(_model(seed=2), (values, mask), (values, mask), half, checkpoint=checkpoint)
    resumed, resumed_log = train_flow_vae(_model(seed=2), (values, mask), (values, mask), settings,
                                          checkpoint=checkpoint)
    assert [e["val_loss"] for e in resumed_log] == [e["val_loss"] for e in log]
    for key, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[key]), key
    other = FlowTraining(epochs=6, warmup_epochs=2, batch_size=8, milestones=(3,), seed=5)
    with pytest.raises(ConfigError, match="other settings"):
        train_flow_vae(_model(seed=2), (values, mask), (values, mask), other, checkpoint=checkpoint)


def test_sampling_is_seeded_and_config_round_trips_and_rejects_bad_values():
    model = _model(model="vamp")
    assert torch.equal(model.sample(3, seed=7), model.sample(3, seed=7))
    assert model.sample(3, seed=7).shape == (3, 4, 1, 4, 4)
    assert model.futures(torch.rand(2, 1, 4, 4), 3, seed=0).shape == (2, 3, 4, 1, 4, 4)
    assert FlowVAEConfig.from_dict(model.config.to_dict()) == model.config
    generator = GeneratorConfig(input_shape=(1, 4, 4), model="rhvae")
    with pytest.raises(ConfigError, match="'vae'"):
        FlowVAEConfig(generator, visits=3)
    with pytest.raises(ConfigError, match="visits"):
        FlowVAEConfig(GeneratorConfig(input_shape=(1, 4, 4), model="vae"), visits=1)
    with pytest.raises(ConfigError, match="unknown option"):
        FlowVAEConfig.from_dict({"generator": {"input_shape": [1, 4, 4], "model": "vae"}, "visits": 3, "flows": 2})


def test_sequences_start_from_the_prior_or_from_a_fitted_sampler_of_first_visit_codes():
    from medaug.sampling.samplers import build_sampler

    model = _model(latent_dim=3)
    prior_start = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(model.sample(6, seed=2), model._forward_from(prior_start), rtol=0, atol=0)
    first_visits = torch.rand(20, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    gmm = build_sampler("gmm", n_components=2).fit(model.frame, first_visits, allow_uninformative=True)
    codes, _ = gmm.draw(6, seed=2)
    sequences = model.sample(6, seed=2, start=gmm)
    torch.testing.assert_close(sequences, model._forward_from(codes), rtol=0, atol=0)
    # the first visit decodes z_0 itself: the flows only act on later visits
    torch.testing.assert_close(sequences[:, 0], model.frame.decode(codes))
    with torch.no_grad():
        means = model.frame.encoder(first_visits)[0]
    same = build_sampler("gmm", n_components=2).fit_codes(model.frame, means)
    torch.testing.assert_close(same.draw(6, seed=2)[0], codes)
    with pytest.raises(ConfigError, match="at least 2 latent codes"):
        build_sampler("gmm").fit_codes(model.frame, means[:1])
