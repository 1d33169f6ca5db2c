"""bf16 autocast on the CPU (``mixed_precision``): the RHVAE metric stays in fp32, so training and
geometry-aware sampling run where bf16 metric algebra fails."""

import numpy as np
import torch

from medaug.compute import autocast
from medaug.generative.config import GeneratorConfig
from medaug.generative.metric import Metric, inverse_metric, lower_factors, sample_velocity
from medaug.generative.models import build_model
from medaug.generative.trainer import TrainerConfig, train_generator
from medaug.sampling.samplers import build_sampler

CPU = torch.device("cpu")


def _far_apart_metric():
    """40 codes at scale 30, T = 0.5, λ = 1e-3: G⁻¹ is ill-conditioned near the codes."""
    torch.manual_seed(0)
    centroids = 30.0 * torch.randn(40, 10)
    factors = lower_factors(3 * torch.randn(40, 10), 3 * torch.randn(40, 45))
    return Metric(centroids, factors, 0.5, 1e-3), centroids[:25] + 0.01 * torch.randn(25, 10)


def test_the_metric_stays_positive_definite_and_equal_to_fp32_under_bf16_autocast():
    metric, z = _far_apart_metric()
    reference = metric.inverse(z)
    volume, gradient = metric.log_volume_and_gradient(z)
    with autocast(CPU, True):
        assert torch.mm(z, z.T).dtype == torch.bfloat16  # autocast is on for the networks' algebra
        raw = inverse_metric(z, metric.centroids, metric.outer, metric.temperature, metric.regularization)
        assert (torch.linalg.cholesky_ex(raw.float())[1] > 0).any()  # bf16 algebra: not positive definite
        inverse = metric.inverse(z)
        low_volume, low_gradient = metric.log_volume_and_gradient(z)
        velocity = sample_velocity(inverse, torch.Generator().manual_seed(0))
    assert inverse.dtype == torch.float32 and torch.equal(inverse, reference)
    torch.testing.assert_close(low_volume, volume, rtol=0, atol=0)
    torch.testing.assert_close(low_gradient, gradient, rtol=0, atol=0)
    torch.testing.assert_close(velocity, sample_velocity(reference, torch.Generator().manual_seed(0)))


def _rhvae():
    torch.manual_seed(0)
    return build_model(GeneratorConfig(input_shape=(1, 8, 8, 8), model="rhvae", latent_dim=4, hidden=(32,),
                                       options={"metric_hidden": 8, "temperature": 0.3, "regularization": 1e-3}))


def test_rhvae_trains_and_samples_under_bf16_autocast_on_the_cpu(tmp_path):
    data = torch.rand(30, 1, 8, 8, 8).round()
    settings = dict(batch_size=10, learning_rate=1e-2, max_steps=12, patience_steps=12, seed=1)
    full = train_generator(_rhvae(), data[:24], data[24:], tmp_path / "fp32", TrainerConfig(**settings))
    mixed = train_generator(_rhvae(), data[:24], data[24:], tmp_path / "bf16",
                            TrainerConfig(mixed_precision=True, **settings))
    assert np.isfinite(mixed["best_train_loss"])
    assert mixed["best_train_loss"] != full["best_train_loss"]  # the networks did run in bf16
    assert abs(mixed["best_train_loss"] - full["best_train_loss"]) < 0.05 * abs(full["best_train_loss"])
    model = mixed["model"].eval()
    sampler = build_sampler("rhvae-hmc", steps=20, leapfrog_steps=5).fit(model, data[:24], allow_uninformative=True)
    reference = sampler.sample(6, seed=2)
    with autocast(CPU, True):
        first, again = sampler.sample(6, seed=2), sampler.sample(6, seed=2)
    assert torch.equal(first.images, again.images) and torch.isfinite(first.images).all()
    torch.testing.assert_close(first.latents, reference.latents, rtol=0.05, atol=0.05)


def test_cpu_mixed_precision_is_its_own_record_so_earlier_fp32_results_are_redone():
    from medaug.compute import precision_record

    assert precision_record("cpu", True) == {"autocast": "bf16-cpu"}  # fp32 before autocast reached the CPU
    assert precision_record("cuda", True) == precision_record("cuda:1", True) == precision_record("cpu", False) == {}
