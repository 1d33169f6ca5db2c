"""Visit grid, BIDS outputs and ``medaug longitudinal fit|generate|impute`` on a tiny cohort."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from medaug.cli import main
from medaug.errors import InputDataError
from medaug.longitudinal.sequences import session_label, visit_grid
from medaug.longitudinal.workflow import generate_longitudinal

SMALL = "generator: {hidden: [32], pseudo_inputs: 4, latent_dim: 4}\nflow: {made_hidden: 16}\n" \
        "training: {batch_size: 4, warmup_epochs: 1}\n"


def test_visit_grid_places_sessions_by_age_and_never_fills_gaps():
    table = pd.DataFrame({"participant_id": ["a", "a", "b", "b", "b"],
                          "session_id": ["ses-M000", "ses-M024", "ses-M000", "ses-M012", "ses-M048"],
                          "age": [70.0, 72.1, 80.0, 80.9, 84.0]})
    values = torch.arange(5.0)[:, None]
    grid = visit_grid(table, values, visits=3, interval_years=1.0)
    assert grid.participants == ["a", "b"]
    assert grid.mask.tolist() == [[True, False, True], [True, True, False]]  # b's 4-year visit is beyond the grid
    assert grid.values[0, :, 0].tolist() == [0.0, 0.0, 1.0] and grid.values[1, :2, 0].tolist() == [2.0, 3.0]
    assert np.allclose(grid.ages(), [[70, 71, 72], [80, 81, 82]])
    assert session_label(2, 0.5) == "M012"
    with pytest.raises(InputDataError, match="same 1.0-year visit slot"):
        visit_grid(table.assign(age=[70.0, 70.2, 80, 81, 82]), values, visits=3, interval_years=1.0)
    with pytest.raises(InputDataError, match="b ses-M012 has no age"):
        visit_grid(table.assign(age=[70.0, 72, 80, None, 84]), values, visits=3, interval_years=1.0)


def test_longitudinal_fit_generate_impute_write_labelled_valid_bids(tiny_cohort, tmp_path, capsys, validator_errors):
    bids, truth = tiny_cohort
    cohort = tmp_path / "cohort.tsv"
    assert main(["cohort", str(bids), "--out", str(cohort)]) == 0
    config = tmp_path / "small.yaml"
    config.write_text(SMALL)
    model = tmp_path / "model"
    fit = ["longitudinal", "fit", str(cohort), "--label", "AD", "--out", str(model), "--visits", "3",
           "--size", "8,8,8", "--epochs", "3", "--config", str(config), "--prior", "vamp", "--posterior", "iaf"]
    assert main(fit) == 0
    assert "longitudinal VAE for AD" in capsys.readouterr().out
    provenance = json.loads((model / "model" / "provenance.json").read_text())
    assert provenance["label"] == "AD" and provenance["interval_years"] == 1.0
    weights = torch.load(model / "model" / "model.pt", weights_only=True)
    assert main(fit) == 0  # resumes from the finished checkpoint: same weights
    again = torch.load(model / "model" / "model.pt", weights_only=True)
    assert all(torch.equal(weights[k], again[k]) for k in weights)

    synth = tmp_path / "synth"
    assert main(["longitudinal", "generate", str(model), "-n", "2", "--out", str(synth), "--seed", "3"]) == 0
    sessions = pd.read_csv(synth / "sub-synthAD0001" / "sub-synthAD0001_sessions.tsv", sep="\t")
    assert sessions["session_id"].tolist() == ["ses-M000", "ses-M012", "ses-M024"]
    assert np.allclose(np.diff(sessions["age"]), 1.0) and sessions["age"].iloc[0] in provenance["baseline_ages"]
    image = synth / "sub-synthAD0001" / "ses-M012" / "anat" / "sub-synthAD0001_ses-M012_desc-synthetic_T1w.nii.gz"
    assert nib.load(image).shape == (8, 8, 8)
    assert json.loads(image.with_name(image.name.replace(".nii.gz", ".json")).read_text())["Synthetic"] is True
    assert validator_errors(synth) == []
    assert main(["longitudinal", "generate", str(model), "-n", "1", "--out", str(synth)]) == 2  # no overwrite
    # an interrupted call left sub-synthAD0003 without a listing: the next call replaces it
    leftover = synth / "sub-synthAD0003" / "ses-M000" / "anat" / "half-written.nii.gz"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"\x1f\x8b")
    assert main(["longitudinal", "generate", str(model), "-n", "1", "--out", str(synth), "--start-index", "3"]) == 0
    assert not leftover.exists() and len(list((synth / "sub-synthAD0003").rglob("*_T1w.nii.gz"))) == 3
    assert sorted(p.name for p in synth.glob("*_listing.tsv")) == ["synthetic_AD_0001-0002_listing.tsv",
                                                                  "synthetic_AD_0003-0003_listing.tsv"]
    codes = np.asarray(provenance["first_visit_codes"])
    assert codes.shape == (len(provenance["train_participants"]), 4) and np.isfinite(codes).all()
    from_codes = tmp_path / "synth_gmm"
    assert main(["longitudinal", "generate", str(model), "-n", "2", "--out", str(from_codes), "--seed", "3",
                 "--start", "gmm", "--components", "2"]) == 0
    gmm_image = from_codes / image.relative_to(synth)
    sidecar = json.loads(gmm_image.with_name(gmm_image.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["Synthetic"] is True and sidecar["Start"] == "gmm" and sidecar["StartComponents"] == 2
    assert not np.allclose(nib.load(gmm_image).get_fdata(), nib.load(image).get_fdata())
    assert validator_errors(from_codes) == []

    imputed = tmp_path / "imputed"
    assert main(["longitudinal", "impute", str(model), str(cohort), "--out", str(imputed), "--draws", "2"]) == 0
    listing = pd.read_csv(imputed / "imputed_listing.tsv", sep="\t")
    observed = set(zip(truth["participant_id"], truth["session_id"]))
    ad = truth[truth["diagnosis"] == "AD"]
    expected_missing = 3 * ad["participant_id"].nunique() - len(ad)
    assert len(listing) == expected_missing > 0
    assert not any((p, s) in observed for p, s in zip(listing["participant_id"], listing["session_id"]))
    for row in listing.itertuples():
        sidecar = json.loads(open(row.path.replace(".nii.gz", ".json")).read())
        assert sidecar["Imputed"] is True and sidecar["Kind"] == row.kind
        sessions = pd.read_csv(imputed / row.participant_id / f"{row.participant_id}_sessions.tsv", sep="\t")
        assert sessions.set_index("session_id").loc[row.session_id, "imputed"]
    assert validator_errors(imputed) == []


def test_longitudinal_fit_explains_missing_ages(tiny_cohort, tmp_path, capsys):
    bids, _ = tiny_cohort
    cohort = tmp_path / "cohort.tsv"
    assert main(["cohort", str(bids), "--out", str(cohort)]) == 0
    table = pd.read_csv(cohort, sep="\t")
    table.loc[table["diagnosis"] == "AD", "age"] = None
    table.to_csv(cohort, sep="\t", index=False, na_rep="n/a")
    assert main(["longitudinal", "fit", str(cohort), "--label", "AD", "--out", str(tmp_path / "m"),
                 "--size", "8,8,8", "--epochs", "1"]) == 2
    assert "has no age" in capsys.readouterr().err


def test_longitudinal_commands_explain_bad_models_counts_labels_and_settings(tiny_cohort, tmp_path, capsys):
    bids, _ = tiny_cohort
    cohort = tmp_path / "cohort.tsv"
    assert main(["cohort", str(bids), "--out", str(cohort)]) == 0
    capsys.readouterr()
    assert main(["longitudinal", "generate", str(tmp_path / "nowhere"), "-n", "2", "--out", str(tmp_path / "s")]) == 2
    assert "is not a saved model folder" in capsys.readouterr().err
    settings = tmp_path / "bad.yaml"
    settings.write_text("optimizer: {lr: 0.1}\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["longitudinal", "fit", str(cohort), "--label", "AD", "--out", str(tmp_path / "m"), "--config", str(settings)])
    assert exit_info.value.code == 2 and "unknown section(s) ['optimizer']" in capsys.readouterr().err
    small = tmp_path / "small.yaml"
    small.write_text(SMALL)
    model = tmp_path / "model"
    assert main(["longitudinal", "fit", str(cohort), "--label", "AD", "--out", str(model), "--visits", "3",
                 "--size", "8,8,8", "--epochs", "2", "--config", str(small)]) == 0
    capsys.readouterr()
    for count, message in (("0", "must be a whole number ≥ 1, got 0"), ("100000000000", "at most 100000 images")):
        with pytest.raises(SystemExit) as exit_info:
            main(["longitudinal", "generate", str(model), "-n", count, "--out", str(tmp_path / "s")])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    record = model / "model" / "provenance.json"
    record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "first_visit_codes"}))
    assert main(["longitudinal", "generate", str(model), "-n", "1", "--out", str(tmp_path / "s"), "--start", "gmm"]) == 2
    assert "refit it with `medaug longitudinal fit` to use --start gmm" in capsys.readouterr().err
    with pytest.raises(InputDataError, match="start must be one of prior, gmm"):
        generate_longitudinal(model, 1, tmp_path / "s", seed=0, start="hmc")
    with pytest.raises(SystemExit) as exit_info:
        main(["longitudinal", "generate", str(model), "-n", "1", "--out", str(tmp_path / "s"), "--start", "gmm",
              "--components", "0"])
    assert exit_info.value.code == 2 and "argument --components: must be a whole number ≥ 1, got 0" in capsys.readouterr().err
    cn_only = tmp_path / "cn.tsv"
    pd.read_csv(cohort, sep="\t").query("diagnosis == 'CN'").to_csv(cn_only, sep="\t", index=False)
    assert main(["longitudinal", "impute", str(model), str(cn_only), "--out", str(tmp_path / "i")]) == 2
    assert "no image with diagnosis 'AD'" in capsys.readouterr().err


def test_interrupted_fit_and_generate_resume_to_the_results_of_uninterrupted_runs(tiny_cohort, tmp_path, monkeypatch):
    from medaug.data.derivatives import DerivativeDataset
    from medaug.training import TrainingLoop

    cohort, config = tmp_path / "cohort.tsv", tmp_path / "small.yaml"
    assert main(["cohort", str(tiny_cohort[0]), "--out", str(cohort)]) == 0
    config.write_text(SMALL)

    def fit(out):
        return main(["longitudinal", "fit", str(cohort), "--label", "AD", "--out", str(out), "--visits", "3",
                     "--size", "8,8,8", "--epochs", "4", "--config", str(config)])

    def generate(model, out):
        return main(["longitudinal", "generate", str(model), "-n", "3", "--out", str(out), "--seed", "5"])

    def interrupt_after(calls, cls, name):
        original, done = getattr(cls, name), []

        def cut(*args, **kwargs):
            if len(done) == calls:
                raise KeyboardInterrupt
            done.append(1)
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, cut)

    assert fit(tmp_path / "straight") == 0 and generate(tmp_path / "straight", tmp_path / "synth_straight") == 0
    interrupt_after(2, TrainingLoop, "_write")  # Ctrl-C after the second epoch's checkpoint
    assert fit(tmp_path / "cut") == 130
    monkeypatch.undo()
    assert (tmp_path / "cut" / "checkpoint.pt").is_file() and not (tmp_path / "cut" / "model").exists()
    assert fit(tmp_path / "cut") == 0
    for name in ("model/model.pt", "training_log.tsv"):
        if name.endswith(".pt"):
            straight = torch.load(tmp_path / "straight" / name, weights_only=True)
            resumed = torch.load(tmp_path / "cut" / name, weights_only=True)
            assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
        else:
            log = pd.read_csv(tmp_path / "cut" / name, sep="\t").drop(columns="seconds", errors="ignore")
            pd.testing.assert_frame_equal(log, pd.read_csv(tmp_path / "straight" / name, sep="\t").drop(columns="seconds", errors="ignore"))
    interrupt_after(4, DerivativeDataset, "write_image")  # Ctrl-C in the second subject's sessions
    assert generate(tmp_path / "cut", tmp_path / "synth_cut") == 130
    monkeypatch.undo()
    assert not list((tmp_path / "synth_cut").glob("*_listing.tsv"))
    assert generate(tmp_path / "cut", tmp_path / "synth_cut") == 0  # the unlisted subjects are written again
    straight = sorted(p.relative_to(tmp_path / "synth_straight") for p in (tmp_path / "synth_straight").rglob("*.nii.gz"))
    assert straight == sorted(p.relative_to(tmp_path / "synth_cut") for p in (tmp_path / "synth_cut").rglob("*.nii.gz"))
    assert len(straight) == 9
    for path in straight:
        assert np.array_equal(nib.load(tmp_path / "synth_straight" / path).get_fdata(),
                              nib.load(tmp_path / "synth_cut" / path).get_fdata()), path


TRAJECTORY = "trajectory: {trajectory_dim: 3, hidden: 16, rnn_layers: 1}\ntraining: {batch_size: 4}\n"


def _feature_generator(cohort, tmp_path, steps: int):
    """A tiny AD VAE trained with `medaug train-generator` in ``tmp_path/vae``: its ``best/`` folder."""
    vae = tmp_path / "vae.yaml"
    vae.write_text("generator: {input_shape: [1, 8, 8, 8], model: vae, latent_dim: 3, hidden: [16]}\n"
                   f"trainer: {{max_steps: {steps}, batch_size: 4}}\n")
    assert main(["train-generator", str(cohort), "--label", "AD", "--out", str(tmp_path / "vae"), "--config", str(vae)]) == 0
    return tmp_path / "vae" / "best"


def test_feature_mapping_model_fits_on_a_generators_features_and_writes_labelled_bids(tiny_cohort, tmp_path, capsys,
                                                                                       validator_errors):
    """Thesis ch. 5 from the command line: visits → features (a trained VAE's encoder means) →
    straight lines → features → images (its decoder), as synthetic BIDS subjects."""
    from medaug.generative.persistence import load_generator
    from medaug.longitudinal.sequences import AgeScale
    from medaug.longitudinal.trajectory_workflow import load_trajectory
    from medaug.longitudinal.trajectory import TrajectorySampler

    bids, truth = tiny_cohort
    cohort = tmp_path / "cohort.tsv"
    assert main(["cohort", str(bids), "--out", str(cohort)]) == 0
    _feature_generator(cohort, tmp_path, steps=4)
    config = tmp_path / "trajectory.yaml"
    config.write_text(TRAJECTORY)
    out = tmp_path / "trajectory"
    fit = ["longitudinal", "fit", str(cohort), "--label", "AD", "--out", str(out), "--model", "feature-mapping",
           "--generator", str(tmp_path / "vae" / "best"), "--visits", "3", "--epochs", "3", "--config", str(config)]
    assert main(fit) == 0
    assert "feature-mapping trajectory model for AD" in capsys.readouterr().out
    provenance = json.loads((out / "model" / "provenance.json").read_text())
    assert provenance["longitudinal_model"] == "feature-mapping" and provenance["visits"] == 3
    assert np.asarray(provenance["trajectory_codes"]).shape == (len(provenance["train_participants"]), 2)
    ad_ages = truth.loc[truth["diagnosis"] == "AD", "age"]
    assert ad_ages.min() <= provenance["age_range"][0] < provenance["age_range"][1] <= ad_ages.max()
    weights = torch.load(out / "model" / "model.pt", weights_only=True)
    assert main(fit) == 0  # resumes from the finished checkpoint: same weights
    again = torch.load(out / "model" / "model.pt", weights_only=True)
    assert all(torch.equal(weights[k], again[k]) for k in weights)

    synth = tmp_path / "synth"
    assert main(["longitudinal", "generate", str(out), "-n", "2", "--out", str(synth), "--seed", "4",
                 "--components", "2"]) == 0
    sessions = pd.read_csv(synth / "sub-synthAD0002" / "sub-synthAD0002_sessions.tsv", sep="\t")
    assert sessions["session_id"].tolist() == ["ses-M000", "ses-M012", "ses-M024"]
    assert np.allclose(np.diff(sessions["age"]), 1.0) and sessions["age"].iloc[0] in provenance["baseline_ages"]
    image = synth / "sub-synthAD0002" / "ses-M024" / "anat" / "sub-synthAD0002_ses-M024_desc-synthetic_T1w.nii.gz"
    sidecar = json.loads(image.with_name(image.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["Synthetic"] is True and sidecar["GeneratorModel"] == "feature-mapping-trajectory"
    assert sidecar["Seed"] == 4 and sidecar["Age"] == sessions["age"].iloc[2]
    # the image is the generator's decoding of the trajectory's features at that age (Eq. 5.1 then μ_θ)
    model, generator, record = load_trajectory(out / "model")
    torch.testing.assert_close(generator.state_dict(), load_generator(tmp_path / "vae" / "best").state_dict())
    sampler = TrajectorySampler(model, 2).fit_codes(torch.as_tensor(record.trajectory_codes), 4)
    ages = np.random.default_rng(4).choice(np.asarray(record.baseline_ages), 2)
    times = torch.as_tensor(AgeScale(*record.age_range).to_time(ages[:, None] + np.arange(3)[None, :]), dtype=torch.float32)
    expected = generator.decode(sampler.new_subjects(2, times, 4)[1, 2][None])[0, 0]
    np.testing.assert_allclose(nib.load(image).get_fdata(), expected.detach().numpy(), atol=1e-5)
    assert validator_errors(synth) == []


def test_feature_mapping_commands_explain_bad_input_and_write_nothing(tiny_cohort, tmp_path, capsys):
    bids, _ = tiny_cohort
    cohort = tmp_path / "cohort.tsv"
    assert main(["cohort", str(bids), "--out", str(cohort)]) == 0
    generator = str(_feature_generator(cohort, tmp_path, steps=2))
    fit = ["longitudinal", "fit", str(cohort), "--label", "AD", "--out", str(tmp_path / "m"), "--epochs", "1"]
    no_ages = tmp_path / "no_ages.tsv"
    pd.read_csv(cohort, sep="\t").drop(columns="age").to_csv(no_ages, sep="\t", index=False)
    cases = [
        (fit + ["--model", "feature-mapping"], "--generator (a trained generator whose encoder"),
        (fit + ["--generator", generator], "goes with --model feature-mapping, and only with it"),
        (fit + ["--model", "feature-mapping", "--generator", str(tmp_path / "vae")], "is not a saved model folder"),
        ([*fit[:2], str(no_ages), *fit[3:], "--model", "feature-mapping", "--generator", generator], "has no age column"),
    ]
    for arguments, message in cases:
        capsys.readouterr()
        assert _exit_code(arguments) == 2, arguments
        assert message in capsys.readouterr().err and not (tmp_path / "m").exists()
    capsys.readouterr()
    config = tmp_path / "trajectory.yaml"
    config.write_text(TRAJECTORY)
    assert main(fit + ["--model", "feature-mapping", "--generator", generator, "--visits", "3", "--config", str(config)]) == 0
    capsys.readouterr()
    weights = (tmp_path / "m" / "model" / "model.pt").read_bytes()
    # other visits are other training sequences: resuming that checkpoint is refused, the model kept
    assert _exit_code(fit + ["--model", "feature-mapping", "--generator", generator, "--visits", "2",
                             "--config", str(config)]) == 2
    assert "visits" in capsys.readouterr().err and (tmp_path / "m" / "model" / "model.pt").read_bytes() == weights
    assert main(["longitudinal", "impute", str(tmp_path / "m"), str(cohort), "--out", str(tmp_path / "i")]) == 2
    assert "imputation (Alg. 7) is the flow-based model's" in capsys.readouterr().err
    assert _exit_code(["longitudinal", "generate", str(tmp_path / "m"), "-n", "1", "--out", str(tmp_path / "s"),
                       "--start", "gmm"]) == 2
    assert "--start is the flow model's" in capsys.readouterr().err
    assert not (tmp_path / "i").exists() and not (tmp_path / "s").exists()


def _exit_code(arguments: list[str]) -> int:
    """The exit status of a command, whether it returns it or its parser exits (usage errors)."""
    try:
        return main(arguments)
    except SystemExit as exit_info:
        return exit_info.code
