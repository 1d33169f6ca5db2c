"""Run folders: lock, step records, interrupted pools, changed inputs, foreign files (issue: reliability)."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from medaug.data.derivatives import DerivativeDataset
from medaug.generative.persistence import load_generator
from medaug.errors import OutputExistsError
from medaug.run_folder import LOCK_FILE, FolderLock, StepRecord, file_signature
from medaug.study.pipeline import run_study
from medaug.study.generation import pool_seed

HOLD_LOCK = ("import sys, time; from medaug.run_folder import FolderLock\n"
             "with FolderLock(sys.argv[1], 'test holder'):\n    print('held', flush=True); time.sleep(60)\n")


def _quick(study_config, bids, out, **changes):
    """One classifier, two runs, the prior and GMM samplers: a study of a few seconds."""
    settings = {"classifiers": ["sklearn-knn"], "conditions": ["real", "synthetic"],
                "samplers": [{"name": "prior"}, {"name": "gmm", "options": {"n_components": 1}}], "runs": 1,
                "synthetic_per_class": [6]}
    return study_config(bids, out, **{**settings, **changes})


def test_lock_refuses_a_live_holder_and_takes_over_a_killed_one(tmp_path, caplog):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputExistsError, match=rf"in use by test holder \(pid {holder.pid} on "):
            with FolderLock(tmp_path, "second"):
                pass
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the lock file stays
        holder.wait(10)
    finally:
        holder.kill()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid
    with caplog.at_level(logging.WARNING), FolderLock(tmp_path, "third"):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["command"] == "third"
        with FolderLock(tmp_path, "nested step"):  # re-entrant in one process
            pass
        assert (tmp_path / LOCK_FILE).exists()
    assert not (tmp_path / LOCK_FILE).exists()
    assert f"taking over the lock of test holder (pid {holder.pid})" in caplog.text


def test_step_record_names_changed_inputs_and_removes_outdated_outputs(tmp_path):
    output = tmp_path / "pool"
    output.mkdir()
    (output / "a.nii.gz").write_text("x")
    record = StepRecord(tmp_path / "pool.inputs.json", {"options": {"n": 1}, "seed": 3})
    assert record.changes() is None
    assert not record.renew([output], "pool")  # no record: whatever is there is unfinished
    assert not output.exists() and record.is_current()
    output.mkdir()
    changed = StepRecord(tmp_path / "pool.inputs.json", {"options": {"n": 3}, "seed": 3})
    assert changed.changes() == ["options"] and changed.fingerprint != record.fingerprint
    assert not changed.renew([output], "pool") and not output.exists()
    assert StepRecord(tmp_path / "pool.inputs.json", {"options": (1,), "seed": 3}).renew([], "x") is False
    assert StepRecord(tmp_path / "pool.inputs.json", {"options": [1], "seed": 3}).is_current()  # tuples = lists


def _pool_state(run_dir):
    pools = {}
    for listing in sorted(run_dir.glob("synthetic/*/synthetic_*_seed*[0-9].tsv")):
        table = pd.read_csv(listing, sep="\t")
        images = np.stack([np.asarray(nib.load(path).dataobj) for path in table["path"]])
        files = sorted(p.name for p in listing.parent.glob("sub-*"))
        pools[str(listing.relative_to(run_dir))] = (images, files, np.load(listing.with_suffix(".npy")))
    return pools


@pytest.mark.slow
def test_interrupted_pool_is_redone_identically_and_changed_options_redo_only_their_tasks(
        study_cohort, study_config, tmp_path, monkeypatch, caplog):
    fresh = run_study(_quick(study_config, study_cohort, tmp_path / "fresh"))
    # an interrupt (Ctrl-C or a kill) after 3 images of the first pool: files without a listing
    written = []
    original = DerivativeDataset.write_image

    def interrupted(self, path, *args, **kwargs):
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(path)
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(DerivativeDataset, "write_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_study(_quick(study_config, study_cohort, tmp_path / "cut"))
    monkeypatch.undo()
    cut = tmp_path / "cut"
    assert len(list(cut.glob("synthetic/prior/sub-synthCN*"))) == 3 and not list(cut.glob("synthetic/prior/*.tsv"))
    assert not (cut / LOCK_FILE).exists()
    resumed = run_study(_quick(study_config, study_cohort, cut))
    pd.testing.assert_frame_equal(resumed["metrics"], fresh["metrics"])
    expected, got = _pool_state(tmp_path / "fresh"), _pool_state(cut)
    assert expected.keys() == got.keys() and len(got) == 4
    for key, (images, files, stack) in expected.items():
        assert got[key][1] == files and len(files) == 12  # 6 CN + 6 AD per sampler: no leftovers
        assert np.array_equal(got[key][0], images) and np.array_equal(got[key][2], stack)

    # gmm n_components 1 → 3: the gmm pools and tasks are redone, and the real-only task, which is also
    # scored on every pool (GAN-test); the prior pool and tasks are kept
    real = cut / "runs/sklearn-knn/real/run-00/metrics.tsv"
    prior = cut / "runs/sklearn-knn/synthetic-prior-n6/run-00/metrics.tsv"
    gmm = cut / "runs/sklearn-knn/synthetic-gmm-n6/run-00/metrics.tsv"
    stamps = {path: path.stat().st_mtime_ns for path in (real, prior, gmm)}
    prior_listing = cut / f"synthetic/prior/synthetic_CN_seed{pool_seed(0, 'prior', 0)}.tsv"
    prior_stamp = prior_listing.stat().st_mtime_ns
    with caplog.at_level(logging.WARNING):
        run_study(_quick(study_config, study_cohort, cut, samplers=[
            {"name": "prior"}, {"name": "gmm", "options": {"n_components": 3}}]))
    assert "the gmm pool of CN" in caplog.text and "options changed" in caplog.text
    record = json.loads((cut / f"synthetic/gmm/synthetic_CN_seed{pool_seed(0, 'gmm', 0)}.inputs.json").read_text())
    assert record["inputs"]["options"]["n_components"] == 3
    sidecar = json.loads(next((cut / "synthetic/gmm").rglob("sub-synthCN0001_desc-synthetic_T1w.json")).read_text())
    assert sidecar["Sampler"]["n_components"] == 3
    assert prior_listing.stat().st_mtime_ns == prior_stamp
    assert prior.stat().st_mtime_ns == stamps[prior]
    assert gmm.stat().st_mtime_ns != stamps[gmm] and real.stat().st_mtime_ns != stamps[real]


def test_cnn_settings_keep_sklearn_tasks_and_stale_folders_and_edited_provenance_are_named(
        study_cohort, study_config, tmp_path, caplog):
    out = tmp_path / "study"
    run_study(_quick(study_config, study_cohort, out))
    task = out / "runs/sklearn-knn/real/run-00/metrics.tsv"
    stamp = task.stat().st_mtime_ns
    run_study(_quick(study_config, study_cohort, out, classifier_training={"epochs": 7, "batch_size": 4}))
    assert task.stat().st_mtime_ns == stamp  # a scikit-learn model reads no CNN training setting
    record = json.loads((out / "generators" / "CN" / "best" / "provenance.json").read_text())
    (out / "generators" / "CN" / "best" / "provenance.json").write_text(json.dumps({**record, "label": "AD"}))
    with caplog.at_level(logging.WARNING):
        run_study(_quick(study_config, study_cohort, out, synthetic_per_class=[4]))
    assert "generators/CN/best/provenance.json contradicts the study's config and split in: label;" in caplog.text
    assert json.loads((out / "generators" / "CN" / "best" / "provenance.json").read_text())["label"] == "CN"
    assert ("task folder(s) of earlier configs are not in this study's config: runs/sklearn-knn/synthetic-gmm-n6, "
            "runs/sklearn-knn/synthetic-prior-n6; they are kept") in caplog.text


@pytest.mark.slow
def test_replaced_input_image_redoes_the_stacks_generators_and_tasks(study_cohort, study_config, tmp_path):
    bids = tmp_path / "bids"
    subprocess.run(["cp", "-r", str(study_cohort), str(bids)], check=True)
    config = _quick(study_config, bids, tmp_path / "out", samplers=[{"name": "prior"}])
    run_study(config)
    run_dir = tmp_path / "out"
    metrics = run_dir / "runs/sklearn-knn/real/run-00/metrics.tsv"
    stamp = metrics.stat().st_mtime_ns
    listing = pd.read_csv(run_dir / "images/train.tsv", sep="\t")
    path, label = listing["path"].iloc[0], listing["diagnosis"].iloc[0]
    other = {"CN": "AD", "AD": "CN"}[label]
    weights = {name: run_dir / "generators" / name / "best" / "model.pt" for name in (label, other)}
    trained = {name: file.stat().st_mtime_ns for name, file in weights.items()}
    image = nib.load(path)
    before = file_signature(path)
    time.sleep(0.01)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[::-1].copy(), image.affine), path)  # another image, same name
    assert file_signature(path) != before
    run_study(config)
    assert metrics.stat().st_mtime_ns != stamp  # the task was redone on the new image
    assert weights[label].stat().st_mtime_ns != trained[label]  # the image's class generator was retrained,
    assert weights[other].stat().st_mtime_ns == trained[other]  # the other class's was kept
    stack = np.load(run_dir / "images/train.npy", mmap_mode="r")
    assert pd.read_csv(run_dir / "images/train.tsv", sep="\t")["mtime_ns"].iloc[0] == file_signature(path)[1]
    assert np.isfinite(stack).all()


def test_run_refuses_folders_it_did_not_write(study_cohort, study_config, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "cohort.tsv").write_text("participant_id\nsub-keep\n")
    with pytest.raises(OutputExistsError, match="holds files that `medaug run` did not write"):
        run_study(_quick(study_config, study_cohort, out))
    assert (out / "cohort.tsv").read_text() == "participant_id\nsub-keep\n"
    assert sorted(p.name for p in out.iterdir()) == ["cohort.tsv"]
    # the folder holding the dataset (output: the dataset's parent) is refused too
    parent = study_cohort.parent
    before = sorted(p.name for p in parent.iterdir())
    with pytest.raises(OutputExistsError, match="holds files that `medaug run` did not write"):
        run_study(_quick(study_config, study_cohort, parent))
    assert sorted(p.name for p in parent.iterdir()) == before


def test_a_second_concurrent_run_is_refused_before_any_work(study_cohort, study_config, tmp_path):
    out = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputExistsError, match="is in use by test holder"):
            run_study(_quick(study_config, study_cohort, out))
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait(10)
    assert os.path.exists(out / LOCK_FILE)  # a killed holder's lock stays until the next run takes it over


@pytest.mark.slow
def test_run_killed_while_writing_a_pool_resumes(study_cohort, study_config, tmp_path):
    """SIGKILL of `medaug run` as the first synthetic image appears; the rerun takes over the lock,
    clears the unlisted images and completes the pools."""
    import yaml

    out = tmp_path / "killed"
    config = _quick(study_config, study_cohort, out, synthetic_per_class=[400])
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    process = subprocess.Popen([sys.executable, "-m", "medaug", "run", str(path)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    first = out / "synthetic/prior/sub-synthCN0001"
    try:
        deadline = time.monotonic() + 300
        while not first.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        process.kill()
    assert first.exists() and (out / LOCK_FILE).exists()
    assert not (out / f"synthetic/prior/synthetic_CN_seed{pool_seed(0, 'prior', 0)}.tsv").exists()  # killed mid-pool
    run_study(config)
    assert not (out / LOCK_FILE).exists()
    for listing in out.glob("synthetic/*/synthetic_*_seed*[0-9].tsv"):
        table = pd.read_csv(listing, sep="\t")
        assert len(table) == 400 and all(os.path.exists(p) for p in table["path"])
    for sampler in ("prior", "gmm"):
        assert len(list((out / "synthetic" / sampler).glob("sub-synth*"))) == 800
    assert (out / "runs/sklearn-knn/synthetic-prior-n400/run-00/metrics.tsv").exists()


def test_full_disk_during_a_pool_is_one_line_and_the_rerun_completes(study_cohort, study_config, tmp_path,
                                                                    monkeypatch, capsys):
    import errno

    import yaml

    import medaug.io
    from medaug.cli import main

    out = tmp_path / "full"
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_quick(study_config, study_cohort, out).to_dict()))
    original = medaug.io.atomic_write

    def full_disk(target, write):
        if "sub-synthAD0002" in str(target):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return original(target, write)

    monkeypatch.setattr(medaug.io, "atomic_write", full_disk)
    assert main(["run", str(path)]) == 1
    stderr = capsys.readouterr().err
    error = [line for line in stderr.splitlines() if line.startswith("medaug run")]  # beside progress bars, logs
    assert len(error) == 1 and "Traceback" not in stderr
    assert error[0].startswith("medaug run: error: ") and "sub-synthAD0002" in error[0]
    assert "No space left on device; free some space or write to another folder" in error[0]
    assert not (out / LOCK_FILE).exists()
    assert not (out / f"synthetic/prior/synthetic_AD_seed{pool_seed(0, 'prior', 1)}.tsv").exists()
    monkeypatch.undo()
    assert main(["run", str(path)]) == 0
    listing = pd.read_csv(out / f"synthetic/prior/synthetic_AD_seed{pool_seed(0, 'prior', 1)}.tsv", sep="\t")
    assert len(listing) == 6 and all(os.path.exists(p) for p in listing["path"])


@pytest.mark.slow
def test_samplers_added_folders_moved_and_classifier_options_changed(study_cohort, study_config, tmp_path):
    """Adding a sampler leaves the other pools as they were (seeds from sampler names); a moved
    folder resumes; changed classifier options redo the tasks instead of refusing the folder."""
    first = tmp_path / "first"
    run_study(_quick(study_config, study_cohort, first))
    gmm_listing = first / f"synthetic/gmm/synthetic_CN_seed{pool_seed(0, 'gmm', 0)}.tsv"
    gmm_task = first / "runs/sklearn-knn/synthetic-gmm-n6/run-00/metrics.tsv"
    stamps = {path: path.stat().st_mtime_ns for path in (gmm_listing, gmm_task)}
    with_jitter = [{"name": "prior"}, {"name": "jitter"}, {"name": "gmm", "options": {"n_components": 1}}]
    run_study(_quick(study_config, study_cohort, first, samplers=with_jitter))
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items())
    assert (first / "runs/sklearn-knn/synthetic-jitter-n6/run-00/metrics.tsv").exists()

    moved = tmp_path / "moved"
    first.rename(moved)
    task = moved / "runs/sklearn-knn/synthetic-gmm-n6/run-00/metrics.tsv"
    stamp = task.stat().st_mtime_ns
    resumed = run_study(_quick(study_config, study_cohort, moved, samplers=with_jitter))
    assert task.stat().st_mtime_ns == stamp and resumed["tasks"] == 4

    changed = run_study(_quick(study_config, study_cohort, moved, samplers=with_jitter,
                               classifier_options={"sklearn-knn": {"n_neighbors": 1}}))
    assert task.stat().st_mtime_ns != stamp and changed["tasks"] == 4
    record = json.loads((task.parent.parent / "run-00.inputs.json").read_text())
    assert record["inputs"]["options"]["n_neighbors"] == 1


def test_a_copied_config_does_not_make_a_folder_of_other_files_a_study(study_cohort, study_config, tmp_path):
    import yaml

    out = tmp_path / "mystudy"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(_quick(study_config, study_cohort, out).to_dict()))
    for name in ("cohort.tsv", "metrics.tsv"):
        (out / name).write_text("mine\n")
    with pytest.raises(OutputExistsError, match="holds files that `medaug run` did not write"):
        run_study(_quick(study_config, study_cohort, out))
    assert all((out / name).read_text() == "mine\n" for name in ("cohort.tsv", "metrics.tsv"))


def test_the_lock_holder_removes_temporaries_of_a_killed_writer(tmp_path):
    from medaug.io import write_text

    inner = tmp_path / "synthetic" / "sub-synthAD0003" / "anat"
    inner.mkdir(parents=True)
    leftover = inner / ".sub-synthAD0003_desc-synthetic_T1w.nii.gz.k2j_x9q0.tmp.nii.gz"
    leftover.write_bytes(b"half")
    kept = inner / ".hidden-but-not-ours"
    kept.write_text("x")
    with FolderLock(tmp_path, "test"):
        assert not leftover.exists() and kept.exists()
        write_text(tmp_path / "a.tsv", "x\n")
    assert (tmp_path / "a.tsv").read_text() == "x\n"


def test_a_second_build_of_an_example_cohort_is_refused_while_one_runs(tmp_path):
    from medaug.simulation.example_cohort import ExampleCohortConfig, build_example_cohort

    out = tmp_path / "bids"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputExistsError, match="in use by test holder"):
            build_example_cohort(out, ExampleCohortConfig(subjects_per_label=1, resolution_mm=8.0))
        assert not list(out.glob("sub-*"))  # nothing simulated into the other build's folder
    finally:
        holder.kill()
        holder.wait(10)


def test_two_option_sets_of_one_sampler_are_two_labelled_pools_and_conditions(study_config, study_cohort, tmp_path):
    from medaug.errors import ConfigError

    with pytest.raises(ConfigError, match="two entries name the pool gmm; give each entry of one sampler its own label"):
        _quick(study_config, study_cohort, tmp_path / "x", samplers=[{"name": "gmm"}, {"name": "gmm"}])
    with pytest.raises(ConfigError, match=r"samplers\[0\].label '../up': use letters"):
        _quick(study_config, study_cohort, tmp_path / "x", samplers=[{"name": "gmm", "label": "../up"}])
    one = {"name": "gmm", "options": {"n_components": 1}}
    two = {"name": "gmm", "label": "gmm-two", "options": {"n_components": 2}}
    config = _quick(study_config, study_cohort, tmp_path / "study", samplers=[one, two])
    assert [spec.to_dict() for spec in config.samplers] == [one, two]  # no label key where none was given
    results = run_study(config)
    out = tmp_path / "study"
    assert set(results["metrics"]["condition"]) == {"real", "synthetic-gmm-n6", "synthetic-gmm-two-n6"}
    listings = {name: out / f"synthetic/{name}/synthetic_CN_seed{pool_seed(0, name, 0)}.tsv" for name in ("gmm", "gmm-two")}
    assert all(path.is_file() for path in listings.values())
    first, second = (np.load(path.with_suffix(".npy")) for path in listings.values())
    assert first.shape == second.shape and not np.array_equal(first, second)
    record = json.loads(listings["gmm-two"].with_suffix(".inputs.json").read_text())["inputs"]
    assert record["sampler"] == "gmm" and record["options"]["n_components"] == 2
    # the pool's label, not the sampler's name, keys the quality table and the copy audit
    assert set(pd.read_csv(out / "quality.tsv", sep="\t")["sampler"]) == {"gmm", "gmm-two"}


def test_a_sampler_entry_with_its_own_generator_trains_it_beside_the_studys(study_config, study_cohort, tmp_path):
    """A latent diffusion model (MONAI components) beside the study's RHVAE, with the copy controls."""
    from medaug.errors import ConfigError

    with pytest.raises(ConfigError, match=r"the ldm sampler needs a generator.model in ldm, got rhvae; .*generator: \{model: ldm\}"):
        _quick(study_config, study_cohort, tmp_path / "x", samplers=[{"name": "ldm"}])
    ldm = {"name": "ldm", "options": {"steps": 4},
           "generator": {"model": "ldm", "options": {"autoencoder_channels": [4, 4], "unet_channels": [4, 8],
                                                     "norm_groups": 4, "train_timesteps": 50, "autoencoder_steps": 1}},
           "trainer": {"max_steps": 2}}
    ancestral = {**ldm, "label": "ldm-ddpm", "options": {"steps": 4, "scheduler": "ddpm"}}  # the same generators
    config = _quick(study_config, study_cohort, tmp_path / "study", samplers=[{"name": "posterior"}, ldm, ancestral],
                    conditions=["real", "real+synthetic"])
    assert config.generator_config(config.samplers[1]).options["train_timesteps"] == 50
    assert config.trainer_config(config.samplers[1]).max_steps == 2 and config.trainer_config().max_steps == 3
    results = run_study(config)
    out = tmp_path / "study"
    assert set(results["metrics"]["condition"]) == {"real", "real+synthetic-posterior-n6", "real+synthetic-ldm-n6",
                                                    "real+synthetic-ldm-ddpm-n6"}
    assert not (out / "generators" / "by-sampler" / "ldm-ddpm").exists()
    for label in ("CN", "AD"):
        assert json.loads((out / "generators" / label / "best" / "config.json").read_text())["model"] == "rhvae"
        own = out / "generators" / "by-sampler" / "ldm" / label / "best"
        assert json.loads((own / "config.json").read_text())["model"] == "ldm"
        listing = pd.read_csv(out / f"synthetic/ldm/synthetic_{label}_seed{pool_seed(0, 'ldm', 0 if label == 'CN' else 1)}.tsv", sep="\t")
        sidecar = json.loads(open(listing["path"][0].replace(".nii.gz", ".json")).read())
        assert sidecar["Synthetic"] is True and sidecar["GeneratorModel"] == "ldm" and Path(sidecar["Generator"]) == own.resolve()
    assert set(pd.read_csv(out / "quality.tsv", sep="\t")["sampler"]) == {"posterior", "ldm", "ldm-ddpm"}
    # one autoencoder, trained on the training images of both classes (never validation or test subjects)
    shared = out / "generators" / "by-sampler" / "ldm" / "shared" / "best"
    provenance = json.loads((shared / "provenance.json").read_text())
    records = {name: json.loads((shared.parent.parent / f"{name}.inputs.json").read_text())["inputs"]
               for name in ("shared", "CN")}
    assert records["shared"]["trainer"]["max_steps"] == 1 and records["CN"]["trainer"]["max_steps"] == 2
    assert provenance["label"] == "CN+AD" and json.loads((shared / "config.json").read_text())["options"]["stage"] == "autoencoder"
    cn, ad = (load_generator(out / "generators" / "by-sampler" / "ldm" / label / "best") for label in ("CN", "AD"))
    torch.testing.assert_close(cn.autoencoder.state_dict(), load_generator(shared).autoencoder.state_dict(), rtol=0, atol=0)
    torch.testing.assert_close(ad.autoencoder.state_dict(), cn.autoencoder.state_dict(), rtol=0, atol=0)
    split = pd.read_csv(out / "split" / "split.tsv", sep="\t")
    assert set(provenance["train_participants"]) == set(split.loc[split["split"] == "train", "participant_id"])
