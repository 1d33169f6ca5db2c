"""Samplers: the volume-element gradient, HMC on a known density, the sampler API."""

import math
import os
import shutil

import pytest
import torch

from medaug.errors import ConfigError
from medaug.generative.config import GeneratorConfig
from medaug.generative.metric import Metric, log_volume_and_gradient, lower_factors
from medaug.generative.models import build_model
from medaug.sampling.hmc import hmc
from medaug.sampling.samplers import build_sampler


def test_log_volume_gradient_matches_autograd_and_finite_differences():
    g = torch.Generator().manual_seed(0)
    d, n = 3, 7
    factors = lower_factors(0.3 * torch.randn(n, d, generator=g, dtype=torch.float64),
                            0.5 * torch.randn(n, 3, generator=g, dtype=torch.float64))
    outer, centroids = factors @ factors.transpose(-1, -2), torch.randn(n, d, generator=g, dtype=torch.float64)
    z = torch.randn(5, d, generator=g, dtype=torch.float64, requires_grad=True)
    value, gradient = log_volume_and_gradient(z, centroids, outer, 1.3, 0.02, chunk=3)  # chunking exercised
    inverse = torch.einsum("bn,nkl->bkl", torch.exp(-(z[:, None] - centroids).pow(2).sum(-1) / 1.69), outer)
    reference = 0.5 * torch.logdet(inverse + 0.02 * torch.eye(d, dtype=torch.float64))
    torch.testing.assert_close(value, reference)
    (autograd,) = torch.autograd.grad(reference.sum(), z)
    torch.testing.assert_close(gradient, autograd)
    step = 1e-6
    for j in range(d):
        shift = torch.zeros(d, dtype=torch.float64)
        shift[j] = step
        plus, _ = log_volume_and_gradient(z.detach() + shift, centroids, outer, 1.3, 0.02)
        minus, _ = log_volume_and_gradient(z.detach() - shift, centroids, outer, 1.3, 0.02)
        torch.testing.assert_close(gradient[:, j].detach(), (plus - minus) / (2 * step), rtol=1e-5, atol=1e-7)


def test_hmc_on_a_single_centroid_metric_samples_its_gaussian_volume_element():
    """One centroid at 0, M = m I, λ → 0: √det G⁻¹ ∝ exp(−d‖z‖²/(2T²)), i.e. N(0, T²/d · I)."""
    d, temperature = 2, 1.0
    centroids = torch.zeros(1, d, dtype=torch.float64)
    outer = 3.0 * torch.eye(d, dtype=torch.float64)[None]

    def log_density(z):
        return log_volume_and_gradient(z, centroids, outer, temperature, 1e-10)

    start = torch.randn(4000, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = hmc(log_density, start, steps=40, leapfrog_steps=10, step_size=0.1,
                 generator=torch.Generator().manual_seed(2))
    samples = result.samples
    variance = temperature**2 / d
    assert samples.mean(0).abs().max() < 0.05
    torch.testing.assert_close(samples.var(0), torch.full((d,), variance, dtype=torch.float64), rtol=0.08, atol=0)
    assert 0.6 < float(result.acceptance.mean()) <= 1.0
    # a fourth moment too: E z⁴ = 3 σ⁴ per coordinate
    assert float(samples.pow(4).mean()) == pytest.approx(3 * variance**2, rel=0.15)


def _tiny_rhvae():
    torch.manual_seed(0)
    model = build_model(GeneratorConfig(input_shape=(1, 6, 5), model="rhvae", latent_dim=2, hidden=(16,),
                                        options={"metric_hidden": 8}))
    data = torch.rand(30, 1, 6, 5)
    model.update_metric([data])
    return model.eval(), data


@pytest.mark.parametrize("name, options", [("rhvae-hmc", dict(steps=20, leapfrog_steps=5, step_size=0.05)),
                                           ("prior", {}), ("gmm", dict(n_components=3))])
def test_samplers_are_reproducible_and_decode_images(name, options):
    model, data = _tiny_rhvae()
    sampler = build_sampler(name, **options).fit(model, data, allow_uninformative=True)
    first, second = sampler.sample(9, seed=4, batch_size=4), sampler.sample(9, seed=4, batch_size=4)
    assert first.images.shape == (9, 1, 6, 5) and first.latents.shape == (9, 2)
    assert float(first.images.min()) >= 0.0 and float(first.images.max()) <= 1.0
    torch.testing.assert_close(first.latents, second.latents, rtol=0, atol=0)
    assert not torch.equal(sampler.sample(9, seed=5).latents, first.latents)
    if name == "rhvae-hmc":
        assert 0.0 <= first.diagnostics["acceptance_rate"] <= 1.0
        assert bool(((first.latents - sampler.centre).norm(dim=1) <= first.diagnostics["support_radius"] + 1e-5).all())


def test_geometry_aware_samples_stay_near_the_training_codes():
    """Eq. 1.8 puts mass where the volume element is small, i.e. close to the centroids."""
    model, data = _tiny_rhvae()
    geometric = build_sampler("rhvae-hmc", steps=30, leapfrog_steps=10, step_size=0.05).fit(model, data, allow_uninformative=True)
    prior = build_sampler("prior").fit(model, data, allow_uninformative=True)
    centroids = model.centroids

    def distance(z):
        return torch.cdist(z, centroids).min(1).values.median()

    assert distance(geometric.sample(200, seed=0).latents) < distance(prior.sample(200, seed=0).latents)
    assert math.isfinite(float(distance(geometric.sample(5, seed=1).latents)))


@pytest.mark.parametrize("name", ["rhvae-hmc", "random-walk"])
def test_rhvae_samplers_use_the_metric_at_the_sampling_temperature(name):
    """The sampler's log-density and G(z) are those of the trained metric at its sampling temperature: its
    gradient is autograd of ½ log det G⁻¹ written out directly, and minus the leapfrog's metric term at v = 0."""
    model, data = _tiny_rhvae()
    sampler = build_sampler(name, temperature=0.7).fit(model, data, allow_uninformative=True)
    assert sampler.metric.temperature == 0.7 and sampler.metric.centroids is model.centroids
    metric = Metric(model.centroids, model.factors, 0.7, model.options.regularization)
    z = model.centroids[:5] + 0.3 * torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    value, gradient = sampler.log_density(z)
    centroids, factors = model.centroids.double(), model.factors.double()
    z64 = z.double().requires_grad_(True)
    weights = torch.exp(-(z64[:, None] - centroids).pow(2).sum(-1) / 0.7**2)
    inverse = torch.einsum("bn,nkl->bkl", weights, factors @ factors.transpose(-1, -2))
    reference = 0.5 * torch.logdet(inverse + model.options.regularization * torch.eye(2, dtype=torch.float64))
    (autograd,) = torch.autograd.grad(reference.sum(), z64)
    torch.testing.assert_close(value.double(), reference.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gradient.double(), autograd, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(metric.gradient(metric.terms(z), torch.zeros_like(z)), -gradient, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(sampler.metric_tensor(z), torch.linalg.inv(metric.inverse(z)), rtol=1e-4, atol=1e-5)


def test_sampler_errors_are_clear():
    model, data = _tiny_rhvae()
    with pytest.raises(Exception, match="unknown sampler"):
        build_sampler("nope")
    with pytest.raises(Exception, match="call fit"):
        build_sampler("prior").sample(3, seed=0)
    vae = build_model(GeneratorConfig(input_shape=(1, 6, 5), model="vae", latent_dim=2, hidden=(16,)))
    with pytest.raises(Exception, match="needs an RHVAE"):
        build_sampler("rhvae-hmc").fit(vae, data, allow_uninformative=True)


def test_exponential_map_under_a_constant_metric_is_a_straight_line():
    from medaug.sampling.geodesics import exponential_map

    d = 3
    metric = Metric(torch.zeros(2, d, dtype=torch.float64), torch.zeros(2, d, d, dtype=torch.float64), 1.0, 0.3)
    z, v = torch.randn(4, d, dtype=torch.float64), torch.randn(4, d, dtype=torch.float64)
    torch.testing.assert_close(exponential_map(metric, z, v, steps=5), z + v)
    half = exponential_map(metric, z, 0.5 * v, steps=5)
    torch.testing.assert_close(half, z + 0.5 * v)


def test_geodesic_shooting_conserves_the_hamiltonian():
    from medaug.sampling.geodesics import exponential_map, hamiltonian_gradients

    g = torch.Generator().manual_seed(3)
    factors = lower_factors(0.3 * torch.randn(6, 2, generator=g, dtype=torch.float64),
                            0.5 * torch.randn(6, 1, generator=g, dtype=torch.float64))
    metric = Metric(torch.randn(6, 2, generator=g, dtype=torch.float64), factors, 1.0, 0.05)
    z, v = torch.randn(5, 2, generator=g, dtype=torch.float64), 0.5 * torch.randn(5, 2, generator=g, dtype=torch.float64)

    def energy(p, q):
        return 0.5 * torch.einsum("bk,bkl,bl->b", q, metric.inverse(p), q)

    # velocity-form energy ½ vᵀ G v at the start equals ½ qᵀ G⁻¹ q along the curve (fine steps)
    q0 = torch.linalg.solve(metric.inverse(z), v)
    p, q = z, q0
    for _ in range(400):
        d_p, d_q = hamiltonian_gradients(metric, p, q)
        p_half, q_half = p + 0.5 * 0.0025 * d_q, q - 0.5 * 0.0025 * d_p
        d_p, d_q = hamiltonian_gradients(metric, p_half, q_half)
        p, q = p + 0.0025 * d_q, q - 0.0025 * d_p
    torch.testing.assert_close(energy(p, q), energy(z, q0), rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(exponential_map(metric, z, v, steps=400), p)


def test_random_walk_concentrates_where_the_volume_element_is_small():
    model, data = _tiny_rhvae()
    walk = build_sampler("random-walk", steps=40, sigma=0.3).fit(model, data, allow_uninformative=True)
    prior = build_sampler("prior").fit(model, data, allow_uninformative=True)
    result = walk.sample(100, seed=0)
    assert 0.0 < result.diagnostics["acceptance_rate"] <= 1.0
    distance = lambda z: torch.cdist(z, model.centroids).min(1).values.median()  # noqa: E731
    assert distance(result.latents) < distance(prior.sample(100, seed=0).latents)


def test_geometric_metric_gradient_matches_autograd():
    from medaug.sampling.posterior_metric import GeometricMetric

    g = torch.Generator().manual_seed(5)
    metric = GeometricMetric(torch.randn(6, 3, generator=g, dtype=torch.float64),
                             torch.rand(6, 3, generator=g, dtype=torch.float64) + 0.5, 0.9, 0.01, tau=0.05)
    z = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    value, gradient = metric.log_density_and_gradient(z)
    diff = z[:, None] - metric.centroids
    weights = torch.exp(-(metric.precisions * diff**2).sum(-1) / metric.rho**2)
    diagonal = weights @ metric.precisions + 0.01 * torch.exp(-0.05 * (z * z).sum(1, keepdim=True))
    reference = 0.5 * diagonal.log().sum(1)
    torch.testing.assert_close(value, reference)
    (autograd,) = torch.autograd.grad(reference.sum(), z)
    torch.testing.assert_close(gradient, autograd)


def test_geometric_hmc_on_one_centroid_samples_its_gaussian():
    """One centroid, precisions p, λ → 0: √det G ∝ exp(−(d/2) Σ pₖ zₖ² / ρ²) = N(0, ρ²/(d pₖ))."""
    from medaug.sampling.posterior_metric import GeometricMetric

    precisions = torch.tensor([[1.0, 4.0]], dtype=torch.float64)
    metric = GeometricMetric(torch.zeros(1, 2, dtype=torch.float64), precisions, 1.0, 1e-12)
    start = 0.1 * torch.randn(4000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result = hmc(metric.log_density_and_gradient, start, steps=60, leapfrog_steps=10, step_size=0.1,
                 generator=torch.Generator().manual_seed(1))
    expected = 1.0 / (2 * precisions[0])
    torch.testing.assert_close(result.samples.var(0), expected, rtol=0.08, atol=0)


def test_geometric_sampler_uses_medoids_and_rho_from_alg4():
    torch.manual_seed(0)
    vae = build_model(GeneratorConfig(input_shape=(1, 6, 5), model="vae", latent_dim=2, hidden=(16,)))
    data = torch.rand(40, 1, 6, 5)
    sampler = build_sampler("geometric", steps=10, n_centroids=8).fit(vae, data, allow_uninformative=True)
    centroids = sampler.metric.centroids
    assert centroids.shape == (8, 2)
    with torch.no_grad():
        means, _ = vae.encoder(data)
    assert all(bool((means == c).all(1).any()) for c in centroids)  # medoids are training codes
    gaps = torch.cdist(centroids, centroids) + torch.diag(torch.full((8,), float("inf")))
    assert sampler.metric.rho == pytest.approx(float(gaps.min(1).values.max()))
    result = sampler.sample(6, seed=0)
    assert result.images.shape == (6, 1, 6, 5) and 0 <= result.diagnostics["acceptance_rate"] <= 1


def test_effective_sample_size_of_ar1_chains_matches_theory():
    import numpy as np

    from medaug.sampling.diagnostics import effective_sample_size

    rng = np.random.default_rng(0)
    phi, steps, chains = 0.8, 4000, 8
    trace = np.zeros((steps, chains, 2))
    for t in range(1, steps):
        trace[t] = phi * trace[t - 1] + rng.standard_normal((chains, 2))
    expected = chains * steps * (1 - phi) / (1 + phi)
    np.testing.assert_allclose(effective_sample_size(trace), expected, rtol=0.15)
    independent = rng.standard_normal((steps, chains, 1))
    np.testing.assert_allclose(effective_sample_size(independent), chains * steps, rtol=0.15)


@pytest.mark.parametrize("name", ["rhvae-hmc", "geometric"])
def test_latent_geometry_figure_is_written(name, tmp_path):
    import matplotlib.image

    from medaug.sampling.figure import plot_latent_geometry

    model, data = _tiny_rhvae()
    sampler = build_sampler(name, steps=10).fit(model, data, allow_uninformative=True)
    samples = sampler.sample(6, seed=0)
    with torch.no_grad():
        codes, _ = model.encoder(data)
    path = plot_latent_geometry(sampler, samples, codes, tmp_path / "latent.png", resolution=40, shown=4)
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 100 and pixels.std() > 0.05  # a drawn figure, not a blank canvas
    with pytest.raises(Exception, match="no latent density"):
        plot_latent_geometry(build_sampler("prior").fit(model), samples, codes, tmp_path / "x.png")


def test_shortest_path_is_straight_under_a_constant_metric_and_bends_around_costly_regions():
    from medaug.sampling.geodesics import curve_length, shortest_path

    g = torch.Generator().manual_seed(0)
    nodes = 4 * torch.rand(1500, 2, generator=g, dtype=torch.float64) - 2
    start, end = torch.tensor([-1.5, 0.0], dtype=torch.float64), torch.tensor([1.5, 0.0], dtype=torch.float64)

    def euclidean(z):
        return torch.eye(2, dtype=z.dtype).expand(len(z), 2, 2)

    curve = shortest_path(euclidean, start, end, nodes, neighbours=24, points=30)
    torch.testing.assert_close(curve[0], start)
    torch.testing.assert_close(curve[-1], end)
    assert curve_length(euclidean, curve) == pytest.approx(3.0, rel=0.04)  # graph paths zig-zag a little
    assert curve[:, 1].abs().max() < 0.2

    def bump(z):  # expensive around the origin
        cost = 1.0 + 50.0 * torch.exp(-(z * z).sum(1) / 0.3)
        return cost[:, None, None] * torch.eye(2, dtype=z.dtype)

    bent = shortest_path(bump, start, end, nodes, points=60)
    straight = torch.stack([torch.linspace(-1.5, 1.5, 400, dtype=torch.float64), torch.zeros(400, dtype=torch.float64)], 1)
    assert curve_length(bump, bent) < 0.7 * curve_length(bump, straight)
    assert bent[:, 1].abs().max() > 0.5  # it goes around the bump


def test_interpolation_decodes_along_the_curve():
    from medaug.sampling.interpolation import interpolate

    model, data = _tiny_rhvae()
    sampler = build_sampler("rhvae-hmc", steps=5).fit(model, data, allow_uninformative=True)
    result = interpolate(sampler, data[:1], data[1:2], points=7)
    assert result.images.shape == (7, 1, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(result.latents[0], model.encoder(data[:1])[0][0])
    assert result.diagnostics["riemannian_length"] > 0


def test_two_stage_vae_reproduces_the_distribution_of_codes():
    from medaug.sampling.two_stage import fit_code_vae, sample_codes

    g = torch.Generator().manual_seed(0)
    mixing = torch.tensor([[1.5, 0.0], [0.8, 0.4]])
    codes = torch.randn(2000, 2, generator=g) @ mixing + torch.tensor([2.0, -1.0])
    second, centre, scale = fit_code_vae(codes, latent_dim=2, epochs=60)
    drawn = sample_codes(second, centre, scale, 4000, g)
    torch.testing.assert_close(drawn.mean(0), codes.mean(0), atol=0.15, rtol=0)
    torch.testing.assert_close(torch.cov(drawn.T), torch.cov(codes.T), atol=0.3, rtol=0.15)


def test_two_stage_sampler_api():
    model, data = _tiny_rhvae()
    sampler = build_sampler("two-stage", epochs=5).fit(model, data, allow_uninformative=True)
    first, second = sampler.sample(4, seed=1), sampler.sample(4, seed=1)
    assert first.images.shape == (4, 1, 6, 5)
    torch.testing.assert_close(first.latents, second.latents, rtol=0, atol=0)


def test_vamp_sampler_draws_from_the_pseudo_input_posteriors():
    torch.manual_seed(0)
    vamp = build_model(GeneratorConfig(input_shape=(1, 6, 5), model="vamp", latent_dim=2, hidden=(16,),
                                       options={"pseudo_inputs": 3}))
    samples = build_sampler("vamp").fit(vamp).sample(3000, seed=0)
    with torch.no_grad():
        mean, log_var = vamp.encoder(torch.sigmoid(vamp.pseudo_inputs))
    # the mixture's first two moments
    torch.testing.assert_close(samples.latents.mean(0), mean.mean(0), atol=0.08, rtol=0)
    second_moment = (log_var.exp() + mean**2).mean(0)
    torch.testing.assert_close(samples.latents.pow(2).mean(0), second_moment, atol=0.1, rtol=0.05)
    with pytest.raises(Exception, match="model: vamp"):
        build_sampler("vamp").fit(_tiny_rhvae()[0])


def test_volume_element_with_ten_thousand_centroids_is_chunked_exactly():
    g = torch.Generator().manual_seed(0)
    d, n = 10, 10_000
    factors = lower_factors(0.2 * torch.randn(n, d, generator=g), 0.2 * torch.randn(n, d * (d - 1) // 2, generator=g))
    outer, centroids = factors @ factors.transpose(-1, -2), torch.randn(n, d, generator=g)
    z = torch.randn(64, d, generator=g)
    value, gradient = log_volume_and_gradient(z, centroids, outer, 1.5, 0.01, chunk=1000)
    reference_value, reference_gradient = log_volume_and_gradient(z, centroids, outer, 1.5, 0.01, chunk=n)
    torch.testing.assert_close(value, reference_value, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gradient, reference_gradient, rtol=1e-3, atol=1e-3)


NO_COMPILER = shutil.which(os.environ.get("CXX", "g++")) is None


@pytest.mark.slow
@pytest.mark.skipif(NO_COMPILER, reason="torch.compile needs a C++ compiler (g++; .ci/run installs it)")
def test_compiled_transitions_give_the_eager_chains_up_to_rounding():
    """``compile: true`` (torch.compile of the trajectory and acceptance): same noise, same acceptances,
    the eager states up to float rounding."""
    from medaug.generative.metric import Metric, lower_factors
    from medaug.sampling.hmc import hmc

    torch.manual_seed(0)
    metric = Metric(torch.randn(20, 4), lower_factors(torch.randn(20, 4), torch.randn(20, 6)), 1.0, 1e-2)
    runs = [hmc(metric.log_volume_and_gradient, metric.centroids[:8].clone(), steps=10, leapfrog_steps=5,
                step_size=0.05, generator=torch.Generator().manual_seed(3), warmup=5, step_jitter=0.2, compile=compiled)
            for compiled in (False, True)]
    eager, compiled = runs
    assert torch.equal(eager.acceptance, compiled.acceptance)
    torch.testing.assert_close(compiled.samples, eager.samples, rtol=1e-3, atol=1e-3)  # rounding, grown over 15 transitions
    assert not torch.equal(eager.samples, eager.start)  # the chains moved


def test_compile_without_a_compiler_is_refused_with_the_fix(monkeypatch):
    from medaug.errors import ConfigError
    from medaug.sampling.hmc import hmc

    from medaug.sampling.samplers import build_sampler

    monkeypatch.setenv("CXX", "no-such-compiler")
    refusal = r"compile: true needs a compiler .* 'no-such-compiler' is not on PATH \(Debian/Ubuntu: apt-get install g"
    with pytest.raises(ConfigError, match=refusal):
        hmc(lambda z: (-(z**2).sum(1), -2 * z), torch.zeros(2, 2), steps=1, leapfrog_steps=1, step_size=0.1,
            generator=torch.Generator().manual_seed(0), compile=True)
    with pytest.raises(ConfigError, match=refusal):  # when the options are read, before any training
        build_sampler("rhvae-hmc", compile=True)


def test_stacked_metrics_give_each_class_its_own_log_volume():
    """K metrics padded into one stack (other centroid counts, T and λ): group k's ½ log det G⁻¹ and
    gradient are metric k's, the padded centroids (Mᵢ = 0) add nothing."""
    from medaug.generative.metric import StackedMetrics

    g = torch.Generator().manual_seed(0)
    metrics = [Metric(torch.randn(n, 3, generator=g, dtype=torch.float64),
                      lower_factors(0.3 * torch.randn(n, 3, generator=g, dtype=torch.float64),
                                    0.5 * torch.randn(n, 3, generator=g, dtype=torch.float64)), t, lam)
               for n, t, lam in [(7, 1.3, 0.02), (4, 0.6, 1e-3), (9, 2.0, 0.1)]]
    z = torch.randn(3, 5, 3, generator=g, dtype=torch.float64)
    for chunk in (4096, 2):  # one product, and centroids two at a time
        for metric in metrics:
            metric.chunk = chunk
        value, gradient = StackedMetrics(metrics).log_volume_and_gradient(z)
        assert value.shape == (3, 5) and gradient.shape == (3, 5, 3)
        for k, metric in enumerate(metrics):
            alone = metric.log_volume_and_gradient(z[k])
            torch.testing.assert_close(value[k], alone[0])
            torch.testing.assert_close(gradient[k], alone[1])


@pytest.mark.parametrize("per_chain, compiled", [(False, False), (True, False),
                                                 pytest.param(False, True, marks=[pytest.mark.slow, pytest.mark.skipif(
                                                     NO_COMPILER, reason="torch.compile needs a C++ compiler")])])
def test_classes_drawn_together_are_the_classes_drawn_alone(per_chain, compiled):
    """``draw_together``: one batch of chains for two RHVAEs (30 and 19 centroids) gives each class the
    chains of its own seeded draw, with its own adapted step, up to float rounding (over short chains:
    HMC trajectories amplify rounding exponentially, so long chains drawn together are other draws)."""
    from medaug.sampling.samplers.rhvae_hmc import RHVAEHMCSampler

    first, data = _tiny_rhvae()
    second, other = _tiny_rhvae()
    second.update_metric([other[:19] ** 2])  # another class (same networks): other codes, fewer of them
    options = dict(steps=20, warmup=10, leapfrog_steps=5, step_size=0.05, per_chain=per_chain, compile=compiled)
    samplers = [build_sampler("rhvae-hmc", **options).fit(m, x, allow_uninformative=True)
                for m, x in [(first, data), (second, other[:19] ** 2)]]
    assert len(samplers[0].centroids) != len(samplers[1].centroids)
    together = RHVAEHMCSampler.draw_together(samplers, 12, seeds=[4, 9])
    for sampler, seed, (latents, diagnostics) in zip(samplers, [4, 9], together):
        alone, alone_diagnostics = sampler.draw(12, seed=seed)
        torch.testing.assert_close(latents, alone, rtol=1e-3, atol=1e-3)  # float32 rounding over 30 transitions
        assert diagnostics["acceptance_rate"] == alone_diagnostics["acceptance_rate"]
        assert diagnostics["step_size"] == pytest.approx(alone_diagnostics["step_size"], rel=1e-4)
        assert diagnostics["sampling_temperature"] == alone_diagnostics["sampling_temperature"]
    assert not torch.allclose(together[0][0], together[1][0][:12])
    with pytest.raises(ConfigError, match="same options"):
        RHVAEHMCSampler.draw_together([samplers[0], build_sampler("rhvae-hmc", steps=3).fit(
            first, data, allow_uninformative=True)], 4, seeds=[0, 1])


def test_grouped_chains_refuse_starts_that_do_not_match_their_generators():
    generators = [torch.Generator().manual_seed(k) for k in range(2)]
    with pytest.raises(ValueError, match=r"start \(K, B, d\) and K generators, got start \(3, 2\) and 2"):
        hmc(lambda z: (-(z**2).sum(-1), -2 * z), torch.zeros(3, 2), steps=1, leapfrog_steps=1, step_size=0.1,
            generator=generators)
    with pytest.raises(ValueError, match=r"got start \(3, 4, 2\) and 2 generators"):
        hmc(lambda z: (-(z**2).sum(-1), -2 * z), torch.zeros(3, 4, 2), steps=1, leapfrog_steps=1, step_size=0.1,
            generator=generators)
