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


def _on_autoencoder(**options):
    """A diffusion-stage model started from an (untrained) autoencoder stage with latent scale 2."""
    autoencoder = _ldm(stage="autoencoder", **options)
    autoencoder.latent_scale.fill_(2.0)
    model = _ldm(**options)
    model.start_from(autoencoder)
    return model


def test_options_are_checked_and_the_latent_map_follows_the_padding():
    model = _ldm()
    assert model.padded == (12, 16, 12) and model.latent_shape == (3, 6, 8, 6)
    with pytest.raises(ConfigError, match="norm_groups 3 must divide every channel count"):
        _ldm(norm_groups=3)
    with pytest.raises(ConfigError, match="stage must be one of autoencoder, diffusion, got 'both'"):
        _ldm(stage="both")
    autoencoder = _ldm(stage="autoencoder")
    assert not hasattr(autoencoder, "unet")
    shared = type(model).shared_stage(model.config)
    assert shared.model_options().stage == "autoencoder" and type(model).shared_stage(autoencoder.config) is None
    own = ("stage", "unet_channels", "train_timesteps")  # the denoiser's, neutralised in the shared stage
    assert {k: v for k, v in shared.options.items() if k not in own} == {k: v for k, v in model.config.options.items()
                                                                         if k not in own}
    assert shared.options["unet_channels"] == [4, 4] and shared.options["train_timesteps"] == 1000
    def shared_of(**options):
        return type(model).shared_stage(GeneratorConfig(input_shape=SHAPE, model="ldm", options={**TINY, **options}))

    # the denoiser's own settings do not call for another autoencoder; its depth (the padding) does
    assert shared_of(unet_channels=[8, 16], train_timesteps=100) == shared
    assert shared_of(unet_channels=[4, 8, 8]) != shared
    bounded = type(model).shared_stage(GeneratorConfig(input_shape=SHAPE, model="ldm",
                                                       options={**TINY, "autoencoder_steps": 7}))
    trainer = TrainerConfig(max_steps=100, patience_steps=50)
    assert type(model).trainer_for(bounded, trainer) == TrainerConfig(max_steps=7, patience_steps=7)
    assert type(model).trainer_for(shared, trainer) is trainer and type(model).trainer_for(model.config, trainer) is trainer
    with pytest.raises(ConfigError, match="trains on a trained autoencoder"):
        model.loss(torch.rand(2, *SHAPE))
    with pytest.raises(ConfigError, match="starts from an ldm autoencoder stage, got a ldm at stage diffusion"):
        model.start_from(_ldm())
    with pytest.raises(ConfigError, match=r"generator.options \(ldm\): unknown option\(s\) temperature"):
        GeneratorConfig(input_shape=SHAPE, model="ldm", options={"temperature": 1.5})
    x = torch.rand(2, *SHAPE)
    mean, log_var = model.encoder(x)
    assert mean.shape == log_var.shape == (2, 3 * 6 * 8 * 6)
    assert model.decode(mean).shape == x.shape and 0 <= float(model.decode(mean).detach().min())
    with pytest.raises(NotImplementedError, match="no tractable log-likelihood"):
        model.log_weights(x)


def test_both_stages_resume_exactly_the_autoencoder_sets_the_scale_and_stays_frozen(tmp_path):
    data = torch.rand(12, *SHAPE)
    config = dict(batch_size=4, learning_rate=1e-3, patience_steps=100, checkpoint_minutes=0.0)

    def train(stage, out, steps, start=None):
        model = _ldm(stage=stage)
        if start is not None:
            model.start_from(start)
        return train_generator(model, data[:8], data[8:], tmp_path / out, TrainerConfig(max_steps=steps, **config))["model"]

    autoencoder = train("autoencoder", "ae", 8)
    train("autoencoder", "ae-resumed", 4)
    _assert_same_weights(autoencoder, train("autoencoder", "ae-resumed", 8))
    with torch.no_grad():
        means = autoencoder.eval().autoencoder.encode(autoencoder._pad(data[:8]))[0]
    assert float(autoencoder.latent_scale) == pytest.approx(1 / float(means.std()), rel=0.05)  # set after the last epoch
    model = train("diffusion", "diffusion", 8, autoencoder)
    train("diffusion", "diffusion-resumed", 4, autoencoder)
    _assert_same_weights(model, train("diffusion", "diffusion-resumed", 8, autoencoder))
    _assert_same_weights(model.autoencoder, autoencoder.autoencoder)  # the shared autoencoder is not trained further
    assert float(model.latent_scale) == float(autoencoder.latent_scale)
    initial = _ldm().unet.state_dict()  # the same seeded initialisation: the denoiser was trained
    assert any(not torch.equal(value, initial[name]) for name, value in model.unet.state_dict().items())


def _assert_same_weights(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


def test_ddim_sampling_is_seeded_and_the_noise_prediction_is_monais():
    from monai.inferers import DiffusionInferer

    model = _on_autoencoder().eval()
    sampler = build_sampler("ldm", steps=3).fit(model, torch.rand(4, *SHAPE))
    first, again, other = (sampler.sample(2, seed=seed) for seed in (5, 5, 6))
    assert first.images.shape == (2, *SHAPE) and torch.equal(first.images, again.images)
    assert not torch.equal(first.images, other.images) and first.diagnostics["denoising_steps"] == 3
    ancestral = build_sampler("ldm", steps=4, scheduler="ddpm").fit(model, torch.rand(4, *SHAPE))
    first, again, other = (ancestral.sample(2, seed=seed) for seed in (5, 5, 6))  # noise at each step, seeded
    assert torch.equal(first.images, again.images) and not torch.equal(first.images, other.images)
    assert first.diagnostics["denoising_steps"] == 4
    with pytest.raises(ConfigError, match="scheduler must be one of ddim, ddpm, got 'euler'"):
        build_sampler("ldm", scheduler="euler")
    # the diffusion stage's loss is MONAI's inferer on the frozen autoencoder's scaled latent means
    model = _on_autoencoder().eval()
    x = torch.rand(3, *SHAPE)
    torch.manual_seed(1)
    loss = model.loss(x)
    torch.manual_seed(1)
    mean = model.autoencoder.encode(model._pad(x))[0]
    noise = torch.randn_like(mean)
    steps = torch.randint(0, 40, (3,))
    prediction = DiffusionInferer(model.noise_schedule)(inputs=2.0 * mean, diffusion_model=model.unet, noise=noise,
                                                         timesteps=steps)
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(prediction, noise))
    loss.backward()
    assert all(p.grad is None for p in model.autoencoder.parameters())
    assert all(p.grad is not None for p in model.unet.parameters())
    # the autoencoder stage's loss: − log p(x|z) with z ~ q(z|x), + kl_weight · KL(q ‖ N(0, I))
    autoencoder = _ldm(stage="autoencoder", kl_weight=0.5)
    torch.manual_seed(2)
    loss = autoencoder.loss(x)
    torch.manual_seed(2)
    mean, sigma = autoencoder.autoencoder.encode(autoencoder._pad(x))
    z = mean + sigma * torch.randn_like(sigma)
    reconstruction = -autoencoder.log_px_given_z(x, autoencoder._crop(autoencoder.autoencoder.decode(z)))
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(mean, sigma),
                                           torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(loss, (reconstruction + 0.5 * kl).mean())
    with pytest.raises(ConfigError, match="shared autoencoder of a latent diffusion model, not a generator"):
        build_sampler("ldm", steps=3).fit(autoencoder, torch.rand(4, *SHAPE)).sample(2, seed=0)


def test_generate_refuses_other_samplers_models_and_writes_an_ldm_pool(tiny_cohort, tmp_path, capsys):
    from medaug.cli import main

    table = tmp_path / "cohort.tsv"
    assert main(["cohort", str(tiny_cohort[0]), "-o", str(table)]) == 0
    config = tmp_path / "ldm.yaml"
    config.write_text("generator:\n  input_shape: [1, 12, 14, 12]\n  model: ldm\n  options: {autoencoder_channels: [4, 4], "
                      "unet_channels: [4, 8], norm_groups: 4, train_timesteps: 40}\ntrainer:\n  max_steps: 2\n  batch_size: 4\n")
    assert main(["train-generator", str(table), "--label", "CN", "--out", str(tmp_path / "cn"), "--config", str(config)]) == 0
    shared = tmp_path / "cn" / "shared" / "best"  # the autoencoder stage, trained first on the same images
    assert json.loads((shared / "config.json").read_text())["options"]["stage"] == "autoencoder"
    assert main(["train-generator", str(table), "--label", "AD", "--out", str(tmp_path / "ad"), "--config", str(config),
                 "--shared", str(shared)]) == 0
    from medaug.generative.persistence import load_generator
    ad, cn = load_generator(tmp_path / "ad" / "best"), load_generator(shared)
    torch.testing.assert_close(ad.autoencoder.state_dict(), cn.autoencoder.state_dict(), rtol=0, atol=0)
    assert not (tmp_path / "ad" / "shared").exists()
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text().replace("autoencoder_channels: [4, 4]", "autoencoder_channels: [4, 8]"))
    rhvae = tmp_path / "rhvae.yaml"
    rhvae.write_text("generator:\n  input_shape: [1, 12, 14, 12]\n  model: rhvae\n")
    for wrong, message in ((other, "its options.autoencoder_channels differ"), (rhvae, "a rhvae has none")):
        capsys.readouterr()
        with pytest.raises(SystemExit) as refused:
            main(["train-generator", str(table), "--label", "AD", "--out", str(tmp_path / "x"), "--config", str(wrong),
                  "--shared", str(shared)])
        assert refused.value.code == 2 and not (tmp_path / "x").exists() and message in capsys.readouterr().err
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
    assert sidecar["GeneratorModel"] == "ldm" and sidecar["Sampler"] == {"sampler": "ldm", "steps": 3, "scheduler": "ddim"}
