"""Device paths: CUDA refused with the fix where there is none; on a GPU machine, the CUDA paths
agree with the CPU (same weights give the same outputs) and stay seeded and resumable."""

import numpy as np
import pytest
import torch

from medaug.compute import resolve_device
from medaug.errors import ConfigError
from medaug.generative.config import GeneratorConfig
from medaug.generative.models import build_model
from medaug.generative.trainer import TrainerConfig, train_generator
from medaug.nets.classifiers import Conv5FC3
from medaug.sampling.samplers import build_sampler
from medaug.study.network_training import ClassifierTraining, predict_proba, train_classifier

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SHAPE = (1, 8, 10, 6)


def test_cuda_without_a_gpu_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="install a CUDA build of torch or set device: cpu"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="device must be cpu or cuda"):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")


def _rhvae():
    torch.manual_seed(0)
    return build_model(GeneratorConfig(input_shape=SHAPE, model="rhvae", latent_dim=3, hidden=(32,),
                                       options={"metric_hidden": 8, "step_size": 0.01}))


@cuda
def test_classifier_outputs_match_between_cpu_and_cuda():
    torch.manual_seed(0)
    network = Conv5FC3(SHAPE, channels=(4, 8)).eval()
    images = torch.rand(10, *SHAPE)
    on_cpu = predict_proba(network, images)
    on_gpu = predict_proba(network.to("cuda"), images)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)
    low = predict_proba(network, images, mixed_precision=True)
    np.testing.assert_allclose(low, on_cpu, atol=0.05)  # bf16 keeps about 3 significant digits


@cuda
def test_classifier_trains_on_cuda_in_both_precisions():
    from test_study_classifier import _blobs

    train, validation = _blobs(24, 0), _blobs(12, 1)
    for mixed in (False, True):
        torch.manual_seed(0)
        settings = ClassifierTraining(epochs=8, learning_rate=3e-3, batch_size=6, device="cuda", mixed_precision=mixed)
        network, log = train_classifier(Conv5FC3((1, 16, 16, 16)), train, validation, settings)
        assert next(network.parameters()).is_cuda
        assert np.isfinite([row["train_loss"] for row in log]).all()
        assert max(row["val_balanced_accuracy"] for row in log) >= 0.9


@cuda
def test_classifier_fast_path_on_cuda_learns_and_matches_the_plain_path():
    """Images in GPU memory (float16), channels-last bf16 convolutions and cuDNN autotuning."""
    from test_study_classifier import _blobs

    train, validation = _blobs(24, 0), _blobs(12, 1)
    torch.manual_seed(0)
    network = Conv5FC3((1, 16, 16, 16)).eval()
    images = validation[0]
    plain = predict_proba(network.to("cuda"), images)
    network.to(memory_format=torch.channels_last_3d)
    np.testing.assert_allclose(predict_proba(network, images.cuda(), channels_last=True), plain, atol=1e-4)
    torch.manual_seed(0)
    settings = ClassifierTraining(epochs=8, learning_rate=3e-3, batch_size=6, device="cuda", mixed_precision=True,
                                  images_on_device=True, channels_last=True)
    network, log = train_classifier(Conv5FC3((1, 16, 16, 16)), train, validation, settings)
    assert np.isfinite([row["train_loss"] for row in log]).all()
    assert max(row["val_balanced_accuracy"] for row in log) >= 0.9
    assert torch.backends.cudnn.benchmark is False  # autotuning is switched back off after training


@cuda
def test_generator_training_on_cuda_resumes_and_matches_cpu_likelihood_of_the_same_weights(tmp_path):
    data = torch.rand(40, *SHAPE).round()
    config = dict(batch_size=10, learning_rate=1e-3, device="cuda", seed=3)
    straight = train_generator(_rhvae(), data[:30], data[30:], tmp_path / "a", TrainerConfig(max_steps=12, **config))
    train_generator(_rhvae(), data[:30], data[30:], tmp_path / "b", TrainerConfig(max_steps=6, **config))
    resumed = train_generator(_rhvae(), data[:30], data[30:], tmp_path / "b", TrainerConfig(max_steps=12, **config))
    for key, value in straight["model"].state_dict().items():
        torch.testing.assert_close(resumed["model"].state_dict()[key], value, atol=1e-6, rtol=1e-5)
    model = straight["model"].eval()
    with torch.no_grad():
        on_gpu = model.encoder(data.cuda())[0].cpu()
        on_cpu = model.to("cpu").encoder(data)[0]
    torch.testing.assert_close(on_gpu, on_cpu, atol=1e-4, rtol=1e-4)
    mixed = train_generator(_rhvae(), data[:30], data[30:], tmp_path / "c",
                            TrainerConfig(max_steps=6, mixed_precision=True, **config))
    assert np.isfinite(mixed["best_train_loss"])


@cuda
def test_geometry_aware_sampling_on_cuda_is_seeded_and_uses_the_cpu_density():
    model = _rhvae()
    data = torch.rand(20, *SHAPE).round()
    model.update_metric([data])
    sampler = build_sampler("rhvae-hmc", steps=20, leapfrog_steps=5, step_size=0.01).fit(model.to("cuda"))
    first, diagnostics = sampler.draw(50, seed=1)
    again, _ = sampler.draw(50, seed=1)
    assert first.is_cuda and torch.equal(first, again) and 0 < diagnostics["acceptance_rate"] <= 1
    z = torch.randn(30, 3)
    cpu_sampler = build_sampler("rhvae-hmc").fit(model.to("cpu"))
    model.to("cuda")
    torch.testing.assert_close(sampler.log_density(z.cuda())[0].cpu(), cpu_sampler.log_density(z)[0],
                               atol=1e-4, rtol=1e-4)
    images = torch.cat(list(sampler.decode(first, batch_size=16)))
    assert images.device.type == "cpu" and images.shape == (50, *SHAPE)


@cuda
def test_longitudinal_vae_trains_and_imputes_on_cuda():
    from test_flow_vae import _model

    from medaug.longitudinal.flow_vae import FlowTraining, train_flow_vae

    values = torch.rand(12, 4, 1, 4, 4).round()
    mask = torch.rand(12, 4) > 0.3
    mask[:, 0] = True
    model, log = train_flow_vae(_model(), (values[:8], mask[:8]), (values[8:], mask[8:]),
                                FlowTraining(epochs=3, warmup_epochs=1, batch_size=4, device="cuda"))
    assert next(model.parameters()).is_cuda and np.isfinite([row["val_loss"] for row in log]).all()
    imputed, _ = model.impute(values[8:].cuda(), mask[8:].cuda(), draws=2, seed=0)
    assert imputed.shape == values[8:].shape


def test_a_file_that_is_not_an_image_stack_is_named(tmp_path):
    from medaug.data.volumes import VolumeFile
    from medaug.errors import InputDataError

    bad = tmp_path / "images" / "train.npy"
    bad.parent.mkdir()
    bad.write_bytes(b"not numpy")
    with pytest.raises(InputDataError, match=r"train.npy is not a .npy image stack.*delete it and rerun"):
        VolumeFile(bad)
    np.save(tmp_path / "flat.npy", np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(InputDataError, match=r"not a C-ordered \(N, C, \*spatial\) stack"):
        VolumeFile(tmp_path / "flat.npy")
    with pytest.raises(InputDataError, match="not found; rerun the step that writes it"):
        VolumeFile(tmp_path / "missing.npy")
