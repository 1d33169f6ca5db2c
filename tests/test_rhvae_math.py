"""RHVAE metric and leapfrog against autograd, finite differences and exact flow properties."""

import math

import pytest
import torch

from medaug.generative.leapfrog import leapfrog_step, tempered_flow, tempering_schedule
from medaug.generative.metric import (
    Metric, log_det_inverse_metric, log_normal_metric, log_volume_and_gradient, lower_factors, sample_velocity,
    soft_bound)

D, N = 3, 5


@pytest.fixture(autouse=True)
def double_precision():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _metric(seed=0, temperature=1.2, regularization=0.05) -> Metric:
    g = torch.Generator().manual_seed(seed)
    factors = lower_factors(0.3 * torch.randn(N, D, generator=g), 0.5 * torch.randn(N, D * (D - 1) // 2, generator=g))
    return Metric(torch.randn(N, D, generator=g), factors, temperature, regularization)


def _direct_inverse(metric: Metric, z: torch.Tensor) -> torch.Tensor:
    """G⁻¹(z) of Eq. 1.7 written out with broadcast differences z − cᵢ (independent of the matmul expansion)."""
    weights = torch.exp(-(z[:, None] - metric.centroids).pow(2).sum(-1) / metric.temperature**2)
    outer = metric.factors @ metric.factors.transpose(-1, -2)
    return torch.einsum("bn,nkl->bkl", weights, outer) + metric.regularization * torch.eye(z.shape[1])


def _potential(z):
    a = torch.tensor([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 1.5]])
    return 0.5 * torch.einsum("bi,ij,bj->b", z, a, z), z @ a


def test_lower_factors_have_positive_diagonal_and_strict_lower_part():
    factors = lower_factors(torch.tensor([[0.0, 1.0, -1.0]]), torch.tensor([[1.0, 2.0, 3.0]]))
    s = soft_bound
    one, two, three = (float(s(torch.tensor(v))) for v in (1.0, 2.0, 3.0))
    expected = torch.tensor([[[1.0, 0, 0], [one, math.exp(one), 0], [two, three, math.exp(-one)]]])
    torch.testing.assert_close(factors, expected)
    # the bound is the identity near zero and saturates far out
    assert float(s(torch.tensor(1e-3))) == pytest.approx(1e-3) and float(s(torch.tensor(1e6))) == pytest.approx(4.0)


def test_closed_form_metric_gradient_matches_autograd_and_finite_differences():
    metric = _metric()
    z = torch.randn(4, D, requires_grad=True)
    v = torch.randn(4, D)

    def metric_energy(z):
        inverse = _direct_inverse(metric, z)
        return -0.5 * log_det_inverse_metric(inverse) + 0.5 * torch.einsum("bk,bkl,bl->b", v, inverse, v)

    torch.testing.assert_close(metric.inverse(z), _direct_inverse(metric, z))
    closed = metric.gradient(metric.terms(z), v)
    (autograd,) = torch.autograd.grad(metric_energy(z).sum(), z)
    torch.testing.assert_close(closed, autograd, rtol=1e-9, atol=1e-10)
    step = 1e-6
    for j in range(D):
        shift = torch.zeros(D)
        shift[j] = step
        finite = (metric_energy(z.detach() + shift) - metric_energy(z.detach() - shift)) / (2 * step)
        torch.testing.assert_close(closed[:, j], finite, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("chunk", [2, 4096])
def test_leapfrog_terms_log_volume_and_autograd_agree_on_one_metric(chunk):
    """One G⁻¹: the leapfrog's metric gradient at v = 0 is ∇ ½ log det G = −∇ ½ log det G⁻¹, the sampler's
    log-volume gradient; both equal autograd of ½ log det G⁻¹ written out directly, chunked or not."""
    base = _metric(4)
    metric = Metric(base.centroids, base.factors, base.temperature, base.regularization, chunk=chunk)
    z = torch.randn(6, D, requires_grad=True)
    half_log_det = 0.5 * torch.logdet(_direct_inverse(metric, z))
    (autograd,) = torch.autograd.grad(half_log_det.sum(), z)
    value, gradient = metric.log_volume_and_gradient(z.detach())
    torch.testing.assert_close(value, half_log_det.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gradient, autograd, rtol=1e-9, atol=1e-10)
    leapfrog = metric.gradient(metric.terms(z.detach()), torch.zeros(6, D))
    torch.testing.assert_close(leapfrog, -autograd, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(metric.log_det_inverse(z.detach()), 2 * value)
    torch.testing.assert_close(metric.tensor(z.detach()) @ metric.inverse(z.detach()),
                               torch.eye(D).expand(6, D, D), rtol=0, atol=1e-10)
    pure = log_volume_and_gradient(z.detach(), metric.centroids, metric.outer, metric.temperature,
                                   metric.regularization, chunk)
    torch.testing.assert_close(pure, (value, gradient), rtol=0, atol=0)


def test_quadratic_metric_gradient_matches_autograd():
    metric = _metric(5)
    z, v = torch.randn(4, D, requires_grad=True), torch.randn(4, D)
    (autograd,) = torch.autograd.grad(0.5 * torch.einsum("bk,bkl,bl->", v, _direct_inverse(metric, z), v), z)
    torch.testing.assert_close(metric.quadratic_gradient(z.detach(), v), autograd, rtol=1e-9, atol=1e-10)


def test_velocity_samples_have_covariance_g_and_the_right_density():
    metric = _metric(1)
    inverse = metric.inverse(torch.zeros(1, D)).expand(200_000, D, D)
    v = sample_velocity(inverse, torch.Generator().manual_seed(0))
    torch.testing.assert_close(torch.cov(v.T), torch.linalg.inv(inverse[0]), rtol=0.03, atol=0.01)
    reference = torch.distributions.MultivariateNormal(torch.zeros(D), covariance_matrix=torch.linalg.inv(inverse[0]))
    torch.testing.assert_close(log_normal_metric(v[:5], inverse[:5]), reference.log_prob(v[:5]))


def test_leapfrog_is_reversible_at_fixed_point_convergence():
    metric = _metric(2)
    z, v = torch.randn(3, D), torch.randn(3, D)
    _, grad_u = _potential(z)
    z1, v1, *_ = leapfrog_step(z, v, grad_u, metric.terms(z), metric, _potential, 0.05, 60)
    _, grad_u1 = _potential(z1)
    z2, v2, *_ = leapfrog_step(z1, -v1, grad_u1, metric.terms(z1), metric, _potential, 0.05, 60)
    torch.testing.assert_close(z2, z, rtol=0, atol=1e-9)
    torch.testing.assert_close(-v2, v, rtol=0, atol=1e-9)


@pytest.mark.parametrize("sqrt_beta_zero", [0.3, 0.8])
def test_flow_log_determinant_equals_the_tempering_formula(sqrt_beta_zero):
    metric = _metric(3)
    steps = 3

    def flow(state):
        z, v = state[:D][None], state[D:][None]
        # undo the flow's initial division by √β₀: the map (z₀, v₀/√β₀) → (z_K, v_K)
        z_k, v_k, _ = tempered_flow(z, v * sqrt_beta_zero, metric, _potential, steps=steps, step_size=0.05,
                                    sqrt_beta_zero=sqrt_beta_zero, fixed_point_iterations=60)
        return torch.cat([z_k[0], v_k[0]])

    jacobian = torch.autograd.functional.jacobian(flow, torch.randn(2 * D))
    log_det = torch.linalg.slogdet(jacobian).logabsdet
    betas = tempering_schedule(sqrt_beta_zero, steps) ** 2
    expected = sum(D / 2 * math.log(betas[k - 1] / betas[k]) for k in range(1, steps + 1))
    assert expected == pytest.approx(D / 2 * math.log(sqrt_beta_zero**2))
    assert float(log_det) == pytest.approx(expected, abs=1e-7)


def test_tempering_schedule_ends_at_one():
    schedule = tempering_schedule(0.3, 3)
    assert float(schedule[0]) == pytest.approx(0.3) and float(schedule[-1]) == pytest.approx(1.0)
    assert bool((schedule[1:] > schedule[:-1]).all())
