"""Faults a user meets (file-system errors, Ctrl-C, damaged model folders, bad tables, bad numbers)
end as one line naming the file and the fix, never a traceback (unless --verbose)."""

import errno
import json
import os
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from medaug.cli import example_cohort, main
from medaug.output_folder import claim_output


def _one_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith(f"medaug {command}: error: "), err
    return lines[0]


@pytest.mark.parametrize("error, expected", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/out/sub-01_T1w.nii.gz"),
     "/data/out/sub-01_T1w.nii.gz: No space left on device; free some space or write to another folder"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/out"),
     "/data/out: Permission denied; choose a folder you can write to, or fix the permissions"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/cd/out"),
     "/mnt/cd/out: Read-only file system; write to another folder"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/cd/.cohort.tsv.v78rfaz3.tmp.tsv"),
     "/mnt/cd/cohort.tsv: Read-only file system; write to another folder"),  # atomic_write's temporary file
    (OSError(errno.ENOSPC, "No space left on device"),  # a failed write() names no file: the output is named
     "No space left on device (writing {out}); free some space or write to another folder"),
])
def test_file_system_errors_are_one_line_with_the_path_and_the_fix(monkeypatch, capsys, tmp_path, error, expected):
    def fail(args):
        raise error

    monkeypatch.setattr(example_cohort, "_example_cohort", fail)
    assert main(["example-cohort", str(tmp_path / "bids")]) == 1
    expected = expected.format(out=tmp_path / "bids")
    assert _one_line(capsys, "example-cohort") == f"medaug example-cohort: error: {expected}"
    with pytest.raises(type(error)):  # --verbose keeps the traceback
        main(["--verbose", "example-cohort", str(tmp_path / "bids")])


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys, tmp_path):
    def interrupt(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(example_cohort, "_example_cohort", interrupt)
    assert main(["example-cohort", str(tmp_path / "bids")]) == 130
    err = capsys.readouterr().err
    assert err == "medaug example-cohort: interrupted; rerun the same command to resume\n"
    with pytest.raises(KeyboardInterrupt):
        main(["--verbose", "example-cohort", str(tmp_path / "bids")])


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_read_only_output_folder_is_named_with_the_fix(tmp_path, capsys):
    bids = tmp_path / "bids"
    argv = ["--subjects-per-label", "1", "--labels", "CN", "--resolution", "8"]
    assert main(["example-cohort", str(bids), *argv]) == 0
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        capsys.readouterr()
        assert main(["example-cohort", str(read_only / "bids"), *argv]) == 1
        line = _one_line(capsys, "example-cohort")
        assert str(read_only) in line and "choose a folder you can write to" in line
        assert main(["cohort", str(bids), "--out", str(read_only / "cohort.tsv")]) == 1
        line = _one_line(capsys, "cohort")
        assert str(read_only) in line and "choose a folder you can write to" in line
    finally:
        read_only.chmod(0o700)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A VAE trained for 2 epochs on five random 8×8×8 images (``<out>`` of train-generator)."""
    folder = tmp_path_factory.mktemp("trained")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(5):
        path = folder / f"img{i}.nii.gz"
        nib.save(nib.Nifti1Image(rng.random((8, 8, 8)).astype("float32"), np.diag([4.0, 4.0, 4.0, 1.0])), path)
        rows.append({"participant_id": f"sub-{i:02d}", "session_id": "ses-M000", "diagnosis": "AD", "path": str(path)})
    pd.DataFrame(rows).to_csv(folder / "cohort.tsv", sep="\t", index=False)
    (folder / "gen.yaml").write_text("generator: {input_shape: [1, 8, 8, 8], latent_dim: 2, hidden: [8]}\n"
                                     "trainer: {max_steps: 2, batch_size: 4}\n")
    assert main(["train-generator", str(folder / "cohort.tsv"), "--label", "AD", "--model", "vae",
                 "--out", str(folder / "model"), "--config", str(folder / "gen.yaml")]) == 0
    return folder / "model"


class Evil:
    def __reduce__(self):
        return print, ("unpickled",)


def _edit_json(path, change):
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


CORRUPTIONS = {
    "truncated weights": ("best/model.pt", lambda p: p.write_bytes(p.read_bytes()[:300]),
                          "is not a readable PyTorch checkpoint (truncated, or another kind of file)"),
    "half the weights": ("best/model.pt", lambda p: p.write_bytes(p.read_bytes()[:p.stat().st_size // 2]),
                         "is not a readable PyTorch checkpoint"),
    "text for weights": ("best/model.pt", lambda p: p.write_text("hello\n"), "is not a readable PyTorch checkpoint"),
    "unsafe pickle": ("best/model.pt", lambda p: torch.save({"x": Evil()}, p),
                      "was refused by torch.load(weights_only=True): it holds objects other than tensors"),
    "tensor for weights": ("best/model.pt", lambda p: torch.save(torch.zeros(3), p),
                           "config.json describes (Expected state_dict to be dict-like"),
    "other weights": ("best/config.json", lambda p: _edit_json(p, lambda c: {**c, "latent_dim": 3}),
                      "model.pt does not hold the weights that"),
    "invalid JSON config": ("best/config.json", lambda p: p.write_text('{"model": '), "is not valid JSON"),
    "config without a key": ("best/config.json",
                             lambda p: _edit_json(p, lambda c: {k: v for k, v in c.items() if k != "input_shape"}),
                             "is not a valid model configuration (generator: missing required option(s) input_shape)"),
    "config with a wrong type": ("best/config.json", lambda p: _edit_json(p, lambda c: {**c, "latent_dim": "two"}),
                                 "generator.latent_dim: expected a whole number, got 'two'"),
    "config not an object": ("best/config.json", lambda p: p.write_text("[1]"), "holds a JSON list, not an object"),
    "missing provenance": ("best/provenance.json", lambda p: p.unlink(), "not found next to the weights"),
    "invalid JSON provenance": ("best/provenance.json", lambda p: p.write_text(p.read_text()[:50]),
                                "is not valid JSON"),
    "provenance with a bad affine": ("best/provenance.json",
                                     lambda p: _edit_json(p, lambda r: {**r, "image_affine": [[1, "x"], [0]]}),
                                     "image_affine must be a 4×4 matrix of finite numbers"),
    "provenance with a bad label": ("best/provenance.json", lambda p: _edit_json(p, lambda r: {**r, "label": 3}),
                                    "label must be a string, got 3"),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_generate_names_a_damaged_file_of_the_model_folder_and_the_fix(trained, tmp_path, capsys, name):
    relative, corrupt, message = CORRUPTIONS[name]
    model = shutil.copytree(trained, tmp_path / "model")
    corrupt(model / relative)
    assert main(["generate", str(model), "--sampler", "prior", "-n", "2", "--out", str(tmp_path / "syn")]) == 2
    line = _one_line(capsys, "generate")
    assert str(model / relative) in line and message in line, line
    assert "restore the file from a copy, or train the" in line
    assert not (tmp_path / "syn").exists()


def test_generate_refuses_an_unfinished_training_folder(trained, tmp_path, capsys):
    model = shutil.copytree(trained, tmp_path / "model")
    shutil.rmtree(model / "best")  # interrupted before the first best epoch was written
    for sampler in ("prior", "gmm"):
        assert main(["generate", str(model), "--sampler", sampler, "-n", "2", "--out", str(tmp_path / "syn")]) == 2
        line = _one_line(capsys, "generate")
        assert f"{model} has no finished best/ model with its training-data record" in line
        assert "rerun `medaug train-generator` with the same arguments" in line and str(model / "best") in line
    shutil.copytree(trained / "best", model / "best")  # a best epoch, but training never finished
    _edit_json(model / "best" / "provenance.json",
               lambda r: {k: v for k, v in r.items() if k not in ("label", "train_images", "image_affine")})
    assert main(["generate", str(model), "--sampler", "gmm", "-n", "2", "--out", str(tmp_path / "syn")]) == 2
    line = _one_line(capsys, "generate")
    assert "records no label, train_images, image_affine: the generator's training did not finish" in line
    assert not (tmp_path / "syn").exists()


def test_generate_from_a_healthy_copy_still_works(trained, tmp_path, capsys):
    assert main(["generate", str(trained), "--sampler", "prior", "-n", "2", "--out", str(tmp_path / "syn"),
                 "--allow-uninformative"]) == 0
    assert len(list((tmp_path / "syn").glob("sub-*/anat/*_T1w.nii.gz"))) == 2


def test_generate_with_a_sampler_for_another_model_names_the_folder_and_the_fix(trained, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # the default sampler, rhvae-hmc, on a VAE
        main(["generate", str(trained), "-n", "2", "--out", str(tmp_path / "syn")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--sampler rhvae-hmc needs a rhvae generator" in error and "holds a vae" in error and "Traceback" not in error
    assert not (tmp_path / "syn").exists()


@pytest.mark.parametrize("content, message", [
    ("participant_id\tdiagnosis\nsub-01\tAD\n", "lacks column(s) session_id, age, sex, site"),
    (b"\x1f\x8b\x08\x00" + bytes(range(256)) * 8, "is not UTF-8 text (byte 0x8b: a binary file?)"),
    ("participant_id\tsession_id\tdiagnosis\tage\tsex\tsite\nsub-01\tses-M000\tAD\tsixty\tF\ts1\n",
     "the age column must hold numbers"),
])
def test_split_names_the_table_and_the_columns_it_needs(tmp_path, capsys, content, message):
    table = tmp_path / "cohort.tsv"
    table.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["split", str(table), "-o", str(tmp_path / "split"), "--test-per-label", "1"]) == 2
    line = _one_line(capsys, "split")
    assert str(table) in line and message in line, line
    assert "columns participant_id, session_id, diagnosis, age, sex, site" in line
    assert not (tmp_path / "split").exists()


@pytest.mark.parametrize("argv, message", [
    (["example-cohort", "OUT", "--seed", "-1"], "argument --seed: a seed is a whole number in [0, 2^32), got -1"),
    (["example-cohort", "OUT", "--seed", str(2**32)], "argument --seed: a seed is a whole number in [0, 2^32)"),
    (["example-cohort", "OUT", "--seed", "1.5"], "argument --seed: expected a whole number, got '1.5'"),
    (["example-cohort", "OUT", "--resolution", "inf"], "argument --resolution: expected a finite number, got 'inf'"),
    (["example-cohort", "OUT", "--resolution", "500"], "resolution must be in [0.5, 10] mm, got 500"),
    (["example-cohort", "OUT", "--resolution", "0.01"], "resolution must be in [0.5, 10] mm, got 0.01"),
    (["example-cohort", "OUT", "--resolution", "-2"], "argument --resolution: resolution must be > 0 mm, got -2"),
    (["example-cohort", "OUT", "--effect", "nan"], "argument --effect: expected a finite number, got 'nan'"),
    (["example-cohort", "OUT", "--effect", "-1"], "argument --effect: effect must be ≥ 0, got -1"),
    (["split", "T.tsv", "-o", "OUT", "--test-per-label", "1", "--seed", "-1"], "argument --seed: a seed is"),
    (["train-generator", "T.tsv", "--label", "AD", "--out", "OUT", "--seed", "-1"], "argument --seed: a seed is"),
    (["generate", "M", "-n", "2", "--out", "OUT", "--seed", "-1"], "argument --seed: a seed is a whole number"),
    (["generate", "M", "-n", "0", "--out", "OUT"], "argument -n: must be a whole number ≥ 1, got 0"),
    (["generate", "M", "-n", "2", "--out", "OUT", "--batch-size", "0"],
     "argument --batch-size: must be a whole number ≥ 1, got 0"),
    (["generate", "M", "-n", "2", "--out", "OUT", "--start-index", "0"], "argument --start-index: must be a whole"),
    (["longitudinal", "fit", "T.tsv", "--label", "AD", "--out", "OUT", "--interval", "nan"],
     "argument --interval: expected a finite number, got 'nan'"),
    (["longitudinal", "fit", "T.tsv", "--label", "AD", "--out", "OUT", "--interval", "0"],
     "argument --interval: interval must be > 0 years, got 0"),
    (["longitudinal", "generate", "M", "-n", "2", "--out", "OUT", "--seed", "-1"], "argument --seed: a seed is"),
    (["longitudinal", "generate", "M", "-n", "2", "--out", "OUT", "--start-index", "0"],
     "argument --start-index: must be a whole number ≥ 1"),
    (["longitudinal", "impute", "M", "T.tsv", "--out", "OUT", "--draws", "0"], "argument --draws: must be a whole"),
    (["longitudinal", "impute", "M", "T.tsv", "--out", "OUT", "--seed", "-1"], "argument --seed: a seed is"),
])
def test_numeric_flags_are_refused_by_argparse(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "usage:" in err and "Traceback" not in err, err
    assert message in err.strip().splitlines()[-1], err
    assert not (tmp_path / "OUT").exists()


def _ad_cohort(folder, rng) -> tuple:
    """Six random 8×8×8 AD images and their cohort TSV (for train-generator)."""
    paths = []
    for i in range(6):
        paths.append(str(folder / f"img{i}.nii.gz"))
        nib.save(nib.Nifti1Image(rng.random((8, 8, 8), dtype=np.float32), np.eye(4)), paths[-1])
    table = folder / "cohort.tsv"
    pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(6)], "session_id": "ses-M000",
                  "diagnosis": "AD", "path": paths}).to_csv(table, sep="\t", index=False)
    return table, paths


def test_train_generator_refuses_to_resume_on_replaced_images(tmp_path, capsys):
    """The checkpoint records the training images' sizes and mtimes: a replaced image is named, not reused."""
    rng = np.random.default_rng(0)
    table, paths = _ad_cohort(tmp_path, rng)
    settings = tmp_path / "settings.yaml"
    settings.write_text("generator: {latent_dim: 2, hidden: [16]}\ntrainer: {max_steps: 2, batch_size: 4}\n")
    command = ["train-generator", str(table), "--label", "AD", "--model", "vae", "--out", str(tmp_path / "model"),
               "--size", "8,8,8", "--config", str(settings)]
    assert main(command) == 0
    assert main(command) == 0  # same images: resumes (nothing left to do)
    nib.save(nib.Nifti1Image(rng.random((8, 8, 8), dtype=np.float32), np.eye(4)), paths[0])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(command)
    assert exit_info.value.code == 2
    assert "other settings (images:" in capsys.readouterr().err


def test_train_generator_takes_the_model_from_the_config_and_refuses_a_contradiction(tmp_path, capsys):
    import yaml

    table, _ = _ad_cohort(tmp_path, np.random.default_rng(1))
    settings = tmp_path / "settings.yaml"
    settings.write_text("generator: {model: vae, latent_dim: 2, hidden: [16]}\ntrainer: {max_steps: 1, batch_size: 4}\n")
    base = ["train-generator", str(table), "--label", "AD", "--size", "8,8,8", "--config", str(settings)]
    assert main([*base, "--out", str(tmp_path / "m")]) == 0
    assert yaml.safe_load((tmp_path / "m/train_config.yaml").read_text())["generator"]["model"] == "vae"
    assert capsys.readouterr().out.startswith("vae for AD")
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--out", str(tmp_path / "m2"), "--model", "rhvae"])
    assert exit_info.value.code == 2
    assert "--model rhvae contradicts generator.model: vae" in capsys.readouterr().err
    assert not (tmp_path / "m2").exists()


def test_a_study_sampler_that_needs_another_generator_model_is_refused_before_any_work():
    from medaug.errors import ConfigError
    from medaug.study.config import StudyConfig

    base = {"name": "x", "output": "out", "data": {"bids": "b", "labels": ["CN", "AD"], "positive": "AD"},
            "generator": {"model": "vae"}}
    for sampler, needed in (("rhvae-hmc", "rhvae"), ("random-walk", "rhvae"), ("vamp", "vamp")):
        with pytest.raises(ConfigError, match=rf"samplers\[1\]: the {sampler} sampler needs a generator.model in "
                                              rf"{needed}, got vae"):
            StudyConfig.from_dict({**base, "samplers": [{"name": "prior"}, {"name": sampler}]})
    StudyConfig.from_dict({**base, "samplers": [{"name": "gmm"}]})


def test_generate_replaces_unlisted_leftovers_and_refuses_listed_images(trained, tmp_path, capsys):
    out = tmp_path / "syn"
    claim_output(out, "generate")  # an interrupted write: the folder is generate's, no listing names the image
    leftover = out / "sub-synthAD0002" / "anat" / ".half.nii.gz"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"\x1f\x8b")
    command = ["generate", str(trained), "--sampler", "prior", "-n", "2", "--out", str(out), "--allow-uninformative"]
    assert main(command) == 0
    assert not leftover.exists() and len(list(out.glob("sub-synthAD000[12]/anat/*_T1w.nii.gz"))) == 2
    capsys.readouterr()
    assert main(command) == 2  # the same images again: listed, never overwritten
    assert "sub-synthAD0001 exists (listed in a synthetic_*.tsv of" in _one_line(capsys, "generate")
