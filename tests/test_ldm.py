"""The latent-diffusion generator built from MONAI's components (issue: LDM beside the RHVAE)."""

import json

import pytest
import torch

from medaug.errors import ConfigError
from medaug.generative.config import GeneratorConfig
from medaug.generative.models import build_model
from medaug.generative.trainer import TrainerConfig, train_generator
from medaug.sampling.samplers import build_sampler

SHAPE = (1, 10, 14, 9)  # no side divisible by the networks' downsampling: padded, then cropped back
TINY = {"autoencoder_channels": [4, 4], "unet_channels": [4, 8], "norm_groups": 4, "train_timesteps": 40}


def _ldm(**options):
    torch.manual_seed(0)
    return build_model(GeneratorConfig(input_shape=SHAPE, model="ldm", options={**TINY, **options}))


def test_options_are_checked_and_the_latent_map_follows_the_padding():
    model = _ldm()
    assert model.padded == (12, 16, 12) and model.latent_shape == (3, 6, 8, 6)
    with pytest.raises(ConfigError, match="norm_groups 3 must divide every channel count"):
        _ldm(norm_groups=3)
    with pytest.raises(ConfigError, match=r"generator.options \(ldm\): unknown option\(s\) temperature"):
        GeneratorConfig(input_shape=SHAPE, model="ldm", options={"temperature": 1.5})
    x = torch.rand(2, *SHAPE)
    mean, log_var = model.encoder(x)
    assert mean.shape == log_var.shape == (2, 3 * 6 * 8 * 6)
    assert model.decode(mean).shape == x.shape and 0 <= float(model.decode(mean).min())
    with pytest.raises(NotImplementedError, match="no tractable log-likelihood"):
        model.log_weights(x)


def test_training_resumes_exactly_and_sets_the_latent_scale(tmp_path):
    data = torch.rand(12, *SHAPE)
    config = dict(batch_size=4, learning_rate=1e-3, patience_steps=100, checkpoint_minutes=0.0)
    straight = train_generator(_ldm(), data[:8], data[8:], tmp_path / "a", TrainerConfig(max_steps=8, **config))
    train_generator(_ldm(), data[:8], data[8:], tmp_path / "b", TrainerConfig(max_steps=4, **config))
    resumed = train_generator(_ldm(), data[:8], data[8:], tmp_path / "b", TrainerConfig(max_steps=8, **config))
    for (name, a), b in zip(straight["model"].state_dict().items(), resumed["model"].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    model = straight["model"].eval()
    with torch.no_grad():
        means = torch.cat([model.autoencoder.encode(model._pad(data[:8]))[0].flatten()])
    assert float(model.latent_scale) == pytest.approx(1 / float(means.std()), rel=0.05)  # set after the last epoch


def test_ddim_sampling_is_seeded_and_the_noise_prediction_is_monais():
    from monai.inferers import DiffusionInferer

    model = _ldm().eval()
    sampler = build_sampler("ldm", steps=3).fit(model, torch.rand(4, *SHAPE))
    first, again, other = (sampler.sample(2, seed=seed) for seed in (5, 5, 6))
    assert first.images.shape == (2, *SHAPE) and torch.equal(first.images, again.images)
    assert not torch.equal(first.images, other.images) and first.diagnostics["ddim_steps"] == 3
    # the training loss's diffusion term is MONAI's inferer on the scaled latent means
    x = torch.rand(3, *SHAPE)
    torch.manual_seed(1)
    loss = model.loss(x)
    torch.manual_seed(1)
    mean, sigma = model.autoencoder.encode(model._pad(x))
    z = model.autoencoder.sampling(mean, sigma)
    reconstruction = -model.log_px_given_z(x, model._crop(model.autoencoder.decode(z)))
    kl = 0.5 * (mean.pow(2) + sigma.pow(2) - 2 * torch.log(sigma) - 1).flatten(1).sum(1)
    noise = torch.randn_like(mean)
    steps = torch.randint(0, 40, (3,))
    prediction = DiffusionInferer(model.noise_schedule)(inputs=mean * model.latent_scale, diffusion_model=model.unet,
                                                         noise=noise, timesteps=steps)
    expected = (reconstruction + 1e-6 * kl).mean() + torch.nn.functional.mse_loss(prediction, noise)
    torch.testing.assert_close(loss, expected)


def test_generate_refuses_other_samplers_models_and_writes_an_ldm_pool(tiny_cohort, tmp_path, capsys):
    from medaug.cli import main

    table = tmp_path / "cohort.tsv"
    assert main(["cohort", str(tiny_cohort[0]), "-o", str(table)]) == 0
    config = tmp_path / "ldm.yaml"
    config.write_text("generator:\n  input_shape: [1, 12, 14, 12]\n  model: ldm\n  options: {autoencoder_channels: [4, 4], "
                      "unet_channels: [4, 8], norm_groups: 4, train_timesteps: 40}\ntrainer:\n  max_steps: 2\n  batch_size: 4\n")
    assert main(["train-generator", str(table), "--label", "CN", "--out", str(tmp_path / "cn"), "--config", str(config)]) == 0
    with pytest.raises(SystemExit) as refused:
        main(["generate", str(tmp_path / "cn"), "--sampler", "rhvae-hmc", "-n", "2", "--out", str(tmp_path / "x")])
    assert refused.value.code == 2 and not (tmp_path / "x").exists()
    assert "needs a rhvae generator; " in capsys.readouterr().err  # ... holds a ldm: use another --sampler (for example ldm)
    out = tmp_path / "pool"
    assert main(["generate", str(tmp_path / "cn"), "--sampler", "ldm", "--steps", "3", "-n", "3", "--out", str(out),
                 "--seed", "7"]) == 0
    assert "3 synthetic images written" in capsys.readouterr().out
    quality = json.loads((out / "synthetic_CN_seed7.quality.json").read_text())
    assert quality["synthetic"] == 3 and 0 <= quality["copy_fraction"] <= 1
    sidecar = json.loads(next(out.glob("sub-synthCN0001/anat/*.json")).read_text())
    assert sidecar["GeneratorModel"] == "ldm" and sidecar["Sampler"] == {"sampler": "ldm", "steps": 3}
