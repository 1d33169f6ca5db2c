"""Generators: likelihood estimates against quadrature, training, persistence, resume, stability."""

import math
from pathlib import Path

import pytest
import torch

from medaug.errors import ConfigError
from medaug.generative.config import GeneratorConfig
from medaug.generative.likelihood import importance_log_likelihood
from medaug.generative.models import build_model
from medaug.generative.persistence import load_generator, save_generator
from medaug.generative.trainer import TrainerConfig, TrainingDivergedError, train_generator
from medaug.sampling.samplers import build_sampler

SHAPE = (1, 4, 3, 2)


TINY_OPTIONS = {"rhvae": {"metric_hidden": 8, "step_size": 0.01}, "vamp": {"pseudo_inputs": 4}}


def _tiny(model="vae", latent_dim=2, **changes):
    torch.manual_seed(0)
    return build_model(GeneratorConfig(input_shape=SHAPE, model=model, latent_dim=latent_dim, hidden=(16,),
                                       options=TINY_OPTIONS.get(model, {}), **changes))


def _quadrature_log_likelihood(model, x, half_width=6.0, points=241):
    """log ∫ p(x|z) N(z; 0, I) dz on a 2D grid (exact up to the grid)."""
    axis = torch.linspace(-half_width, half_width, points)
    grid = torch.cartesian_prod(axis, axis)
    cell = math.log((axis[1] - axis[0]) ** 2)
    with torch.no_grad():
        logits = model.decoder(grid)
        log_prior = -0.5 * grid.pow(2).sum(-1) - math.log(2 * math.pi)
        values = [torch.logsumexp(model.log_px_given_z(xi.expand(len(grid), *SHAPE), logits) + log_prior, 0) + cell
                  for xi in x]
    return torch.stack(values)


@pytest.mark.parametrize("model_name", ["vae", "rhvae"])
def test_importance_sampling_matches_quadrature_and_bounds_the_elbo(model_name):
    model = _tiny(model_name)
    x = torch.rand(3, *SHAPE).round()
    if model_name == "rhvae":
        model.update_metric([torch.rand(10, *SHAPE).round()])
    exact = _quadrature_log_likelihood(model, x)
    estimate = importance_log_likelihood(model, x, samples=3000, chunk=3000)
    torch.testing.assert_close(estimate, exact, atol=0.05, rtol=0)
    model.eval()
    with torch.no_grad():
        elbo = torch.stack([model.log_weights(x.repeat_interleave(500, 0)).view(3, 500).mean(1)])[0]
    assert bool((elbo <= exact + 1e-3).all())


@pytest.mark.parametrize("model_name", ["vae", "rhvae", "vamp", "rae_l2", "rae_gp"])
def test_training_lowers_the_loss_and_keeps_the_best_model(model_name, tmp_path):
    model = _tiny(model_name)
    data = torch.rand(60, *SHAPE).round()
    before = model.loss(data).item()
    result = train_generator(model, data[:48], data[48:], tmp_path, TrainerConfig(max_steps=60, batch_size=12,
                                                                                  learning_rate=1e-2))
    rows = (tmp_path / "training_log.csv").read_text().splitlines()
    assert rows[0] == "epoch,train_loss,val_loss,best_train_loss,seconds" and len(rows) == 16  # 60 steps of 4 per epoch
    assert float(rows[-1].split(",")[1]) < before
    best = load_generator(tmp_path / "best")
    assert result["best_epoch"] >= 1 and type(best) is type(model)


def test_save_load_round_trip_decodes_the_same_samples(tmp_path):
    model = _tiny("rhvae", network="conv", channels=(2, 4))
    model.update_metric([torch.rand(7, *SHAPE)])
    save_generator(model, tmp_path / "m", {"label": "AD"})
    loaded = load_generator(tmp_path / "m")
    assert loaded.centroids.shape == (7, 2) and torch.equal(loaded.factors, model.factors)
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    model.eval()
    torch.testing.assert_close(loaded.decode(z), model.decode(z), rtol=0, atol=0)
    assert '"label": "AD"' in (tmp_path / "m" / "provenance.json").read_text()


def test_resumed_training_equals_uninterrupted_training(tmp_path):
    data = torch.rand(40, *SHAPE).round()
    config = dict(batch_size=10, learning_rate=1e-2, patience_steps=300)
    straight = train_generator(_tiny("rhvae"), data[:30], data[30:], tmp_path / "a", TrainerConfig(max_steps=18, **config))
    train_generator(_tiny("rhvae"), data[:30], data[30:], tmp_path / "b", TrainerConfig(max_steps=9, **config))
    resumed = train_generator(_tiny("rhvae"), data[:30], data[30:], tmp_path / "b", TrainerConfig(max_steps=18, **config))
    assert (tmp_path / "a" / "training_log.csv").read_text().count("\n") == 7
    for (name, a), b in zip(straight["model"].state_dict().items(), resumed["model"].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_non_finite_loss_stops_with_the_epoch(tmp_path):
    data = torch.rand(20, *SHAPE)
    data[3, 0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="epoch 1"):
        train_generator(_tiny("vae"), data, data[:5], tmp_path, TrainerConfig(max_steps=3, batch_size=20))


def test_rhvae_is_stable_on_mri_sized_inputs():
    """pythae 0.1.2 produced NaN within three steps here; thesis ADNI hyper-parameters, a large learning rate."""
    torch.manual_seed(0)
    shape = (1, 32, 40, 32)
    model = build_model(GeneratorConfig(input_shape=shape, model="rhvae", hidden=(64, 64, 32), options={"metric_hidden": 32}))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = torch.rand(10, *shape)
    for _ in range(6):
        loss = model.loss(data)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_conv_rhvae_is_stable_on_example_cohort_volumes(tiny_cohort):
    from medaug.data.cohort import load_cohort
    from medaug.preprocessing.images import image_tensor

    volumes = image_tensor(load_cohort(tiny_cohort[0]), (24, 28, 24))
    assert volumes.shape[1:] == (1, 24, 28, 24) and float(volumes.min()) == 0.0 and float(volumes.max()) == 1.0
    torch.manual_seed(0)
    model = build_model(GeneratorConfig(input_shape=(1, 24, 28, 24), model="rhvae", network="conv", channels=(4, 8, 8)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(5):
        loss = model.loss(volumes)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.update_metric([volumes])
    assert torch.isfinite(importance_log_likelihood(model, volumes[:2], samples=4)).all()


def test_train_generator_command_trains_resumes_and_refuses_other_settings(tiny_cohort, tmp_path, capsys):
    from medaug.cli import main

    table = tmp_path / "cohort.tsv"
    assert main(["cohort", str(tiny_cohort[0]), "-o", str(table)]) == 0
    config = tmp_path / "gen.yaml"
    config.write_text("generator:\n  input_shape: [1, 12, 14, 12]\n  latent_dim: 2\n  hidden: [16]\n"
                      "  metric_hidden: 8\ntrainer:\n  max_steps: 6\n  batch_size: 4\n")  # 5 images: 2 steps an epoch
    argv = ["train-generator", str(table), "--label", "AD", "--out", str(tmp_path / "ad"), "--config", str(config)]
    assert main(argv) == 0
    assert "rhvae for AD" in capsys.readouterr().out
    provenance = (tmp_path / "ad" / "best" / "provenance.json").read_text()
    assert '"label": "AD"' in provenance and "train_images" in provenance
    assert main(argv) == 0  # finished run: resumes and stops at once
    assert (tmp_path / "ad" / "training_log.csv").read_text().count("\n") == 4
    config.write_text(config.read_text().replace("max_steps: 6", "max_steps: 10"))
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert main(["train-generator", str(table), "--label", "XX", "--out", str(tmp_path / "xx"),
                 "--config", str(config)]) == 2
    assert "no image with diagnosis 'XX'" in capsys.readouterr().err


def test_generate_command_writes_labelled_synthetic_images(tiny_cohort, tmp_path, capsys, validator_errors):
    import json

    import nibabel as nib

    from medaug.cli import main

    table = tmp_path / "cohort.tsv"
    assert main(["cohort", str(tiny_cohort[0]), "-o", str(table)]) == 0
    config = tmp_path / "gen.yaml"
    config.write_text("generator:\n  input_shape: [1, 12, 14, 12]\n  latent_dim: 2\n  hidden: [16]\n"
                      "  metric_hidden: 8\ntrainer:\n  max_steps: 2\n  batch_size: 4\n")
    assert main(["train-generator", str(table), "--label", "CN", "--out", str(tmp_path / "cn"),
                 "--config", str(config)]) == 0
    recorded = json.loads((tmp_path / "cn" / "best" / "provenance.json").read_text())
    for sampler in ("rhvae-hmc", "gmm"):
        out = tmp_path / f"synthetic_{sampler}"
        options = ["--steps", "10", "--warmup", "5"] if sampler == "rhvae-hmc" else ["--n-components", "2"]
        assert main(["generate", str(tmp_path / "cn"), "--sampler", sampler, "-n", "3", "--out", str(out),
                     "--seed", "7", "--allow-uninformative", *options]) == 0  # 2 epochs: a collapsed generator
        quality = json.loads((out / "synthetic_CN_seed7.quality.json").read_text())
        assert 0 <= quality["coverage"] <= 1 and quality["synthetic"] == 3
        chains = json.loads((out / "synthetic_CN_seed7.chains.json").read_text())
        assert chains["posterior"]["decoded_spread"] < 0.1  # 2 steps: collapsed, sampled only because allowed
        assert any("averaged" in w or "collapsed" in w for w in quality["warnings"])
        nearest = (out / "synthetic_CN_seed7.nearest.tsv").read_text().splitlines()
        assert nearest[0].split("\t") == ["participant_id", "nearest_training", "nearest_distance", "second_distance",
                                          "training_within_threshold", "median_distance", "kind"] and len(nearest) == 4
        # the training image by subject and session, as a study names it
        assert nearest[1].split("\t")[1] in {Path(p).name.removesuffix("_T1w.nii.gz") for p in recorded["train_images"]}
        images = sorted(out.glob("sub-synthCN*/anat/*_desc-synthetic_T1w.nii.gz"))
        assert len(images) == 3
        sidecar = json.loads(images[0].with_name(images[0].name.replace(".nii.gz", ".json")).read_text())
        assert sidecar["Synthetic"] is True and sidecar["Label"] == "CN" and sidecar["Seed"] == 7
        assert sidecar["Sampler"]["sampler"] == sampler
        if sampler == "rhvae-hmc":
            assert 0 <= sidecar["SamplerDiagnostics"]["acceptance_rate"] <= 1 and sidecar["Sampler"]["warmup"] == 5
        assert sidecar["TrainingSetSHA256"] == recorded["training_set_sha256"]
        image = nib.load(images[0])
        assert image.shape == (12, 14, 12)
        torch.testing.assert_close(torch.as_tensor(image.affine), torch.tensor(recorded["image_affine"],
                                                                              dtype=torch.float64))
        assert not list((tmp_path / "cn").rglob("sampler_*"))  # nothing written into the model folder
    assert validator_errors(tmp_path / "synthetic_gmm") == []
    assert main(["generate", str(tmp_path / "cn"), "--sampler", "gmm", "-n", "1", "--out",
                 str(tmp_path / "synthetic_gmm"), "--n-components", "2", "--allow-uninformative"]) == 2  # never overwrite
    assert "exists" in capsys.readouterr().err
    assert main(["generate", str(tmp_path / "cn"), "--sampler", "gmm", "-n", "1", "--out",
                 str(tmp_path / "refused")]) == 2  # a collapsed generator is refused with the cause
    assert "posterior is uninformative" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", str(tmp_path / "cn"), "--sampler", "prior", "-n", "1", "--out", str(tmp_path / "o2"),
              "--steps", "3"])
    assert exit_info.value.code == 2 and "takes no steps option" in capsys.readouterr().err
    for bad, message in ((["--temperature", "hot"], "temperature: expected a finite number or one of 'auto', 'model', got 'hot'"),
                         (["--target-acceptance", "2"], "target_acceptance in (0, 1)")):
        with pytest.raises(SystemExit) as exit_info:
            main(["generate", str(tmp_path / "cn"), "-n", "1", "--out", str(tmp_path / "o3"), *bad])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_generator_commands_reject_bad_input_clearly(tmp_path, capsys):
    from medaug.cli import main

    assert main(["generate", str(tmp_path), "--sampler", "prior", "-n", "2", "--out", str(tmp_path.parent / "o")]) == 2
    assert "is not a saved model folder: config.json is missing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # never into the model folder
        main(["generate", str(tmp_path), "--sampler", "prior", "-n", "2", "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2 and "is inside the input" in capsys.readouterr().err
    table = tmp_path / "t.tsv"
    table.write_text("participant_id\tpath\nsub-01\tx.nii.gz\n")
    config = tmp_path / "c.yaml"
    config.write_text("generator:\n  latent_dim: 2\noptimiser:\n  lr: 1\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["train-generator", str(table), "--label", "AD", "--out", str(tmp_path / "m"), "--config", str(config)])
    assert exit_info.value.code == 2 and "unknown section(s) ['optimiser']" in capsys.readouterr().err
    config.write_text("generator:\n  latent_dim: 2\n")
    assert main(["train-generator", str(table), "--label", "AD", "--out", str(tmp_path / "m"),
                 "--config", str(config)]) == 2
    assert "lacks column(s) diagnosis" in capsys.readouterr().err
    with pytest.raises(Exception, match="number of samples must be ≥ 1"):
        build_sampler("prior").fit(_tiny("vae")).sample(0, seed=0)


def test_the_budget_counts_optimiser_steps_whatever_the_class_size(tmp_path):
    data = torch.rand(70, *SHAPE).round()
    config = TrainerConfig(max_steps=12, patience_steps=1000, batch_size=25, learning_rate=1e-2)
    small = train_generator(_tiny("vae"), data[:10], data[60:], tmp_path / "small", config)
    large = train_generator(_tiny("vae"), data[:60], data[60:], tmp_path / "large", config)
    assert (small["epochs"], small["steps"]) == (12, 12)   # one batch an epoch
    assert (large["epochs"], large["steps"]) == (4, 12)    # three batches an epoch
    assert TrainerConfig(max_steps=100, patience_steps=10, batch_size=25).epochs(60) == (34, 4)


@pytest.mark.parametrize("selection", ["train", "validation"])
def test_the_selected_loss_chooses_the_kept_weights_and_both_losses_are_logged(selection, tmp_path):
    import json

    import pandas as pd

    data = torch.rand(30, *SHAPE).round()
    result = train_generator(_tiny("vae"), data[:20], data[20:], tmp_path,
                             TrainerConfig(max_steps=40, batch_size=20, learning_rate=3e-2, selection=selection))
    log = pd.read_csv(tmp_path / "training_log.csv")
    column = "train_loss" if selection == "train" else "val_loss"
    assert list(log.columns) == ["epoch", "train_loss", "val_loss", f"best_{column}", "seconds"]
    assert log[["train_loss", "val_loss"]].notna().all().all()
    best = log[column].idxmin()
    assert result["best_epoch"] == log["epoch"][best] and result[f"best_{column}"] == pytest.approx(log[column][best])
    provenance = json.loads((tmp_path / "best" / "provenance.json").read_text())
    assert provenance["epoch"] == result["best_epoch"] and provenance[column] == pytest.approx(log[column][best])


def test_training_without_validation_images_selects_on_the_training_loss(tmp_path):
    data = torch.rand(10, *SHAPE).round()
    train_generator(_tiny("vae"), data, data[:0], tmp_path / "a", TrainerConfig(max_steps=3, batch_size=10))
    assert (tmp_path / "a" / "training_log.csv").read_text().startswith("epoch,train_loss,best_train_loss,seconds")
    with pytest.raises(ConfigError, match="validation needs validation images"):
        train_generator(_tiny("vae"), data, data[:0], tmp_path / "b",
                        TrainerConfig(max_steps=3, batch_size=10, selection="validation"))


def test_epoch_counted_options_are_refused_with_their_replacement():
    with pytest.raises(ConfigError, match=r"max_epochs, patience counted epochs and were replaced by max_steps, "
                                          r"patience_steps"):
        TrainerConfig.from_dict({"max_epochs": 300, "patience": 30}, "trainer")
    with pytest.raises(ConfigError, match="choose train"):
        TrainerConfig(selection="test")
