"""The output-folder rule (:mod:`medaug.output_folder`) and the inputs checked before work: a
refused command leaves every folder it refused byte-identical and says why in one line."""

import os
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from medaug.cli import main
from medaug.errors import ConfigError, InputDataError, OutputExistsError
from medaug.logs import LOG_FILE
from medaug.output_folder import check_output, claim_output, marker_name


def snapshot(folder):
    """Every entry under ``folder`` (links not followed) → its bytes (None for a folder)."""
    return {path.relative_to(folder): (None if path.is_dir() else path.read_bytes())
            for path in sorted(folder.rglob("*"))}


def refused(capsys, argv):
    """The one line ``medaug argv`` ends with: exit code 2, a settings error after its usage line(s)."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2, argv
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    line = err.splitlines()[-1]
    assert line.startswith(f"medaug {argv[0]}: error: "), err
    return line


@pytest.fixture
def private_folder(tmp_path):
    """A folder of someone's files, which no medaug command wrote."""
    folder = tmp_path / "home"
    (folder / ".ssh").mkdir(parents=True)
    (folder / ".ssh" / "id_rsa").write_text("secret")
    (folder / "notes.txt").write_text("notes")
    return folder


@pytest.fixture
def images(tmp_path):
    """A folder with a cohort TSV of five random 8×8×8 AD images and a tiny generator config."""
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(5):
        path = folder / f"img{i}.nii.gz"
        nib.save(nib.Nifti1Image(rng.random((8, 8, 8)).astype("float32"), np.eye(4)), path)
        rows.append({"participant_id": f"sub-{i:02d}", "session_id": "ses-M000", "diagnosis": "AD", "path": str(path)})
    pd.DataFrame(rows).to_csv(folder / "cohort.tsv", sep="\t", index=False)
    (folder / "gen.yaml").write_text("generator: {input_shape: [1, 8, 8, 8], latent_dim: 2, hidden: [8]}\n"
                                     "trainer: {max_steps: 2, batch_size: 4}\n")
    return folder


def test_the_guard_refuses_inputs_and_foreign_folders_and_accepts_its_own(tmp_path, private_folder):
    dataset = tmp_path / "bids"
    (dataset / "derivatives").mkdir(parents=True)
    (tmp_path / "link").symlink_to(dataset / "derivatives")
    for output in (dataset, dataset / "derivatives" / "x", tmp_path / "link" / "x"):
        with pytest.raises(ConfigError, match=f"is inside the input {dataset}"):
            claim_output(output, "preprocess", inputs=[dataset])
    before = snapshot(private_folder)
    with pytest.raises(OutputExistsError, match=r"holds files that `medaug preprocess` did not write \(.ssh, "
                                                r"notes.txt\); give a new or empty output folder"):
        claim_output(private_folder, "preprocess")
    assert snapshot(private_folder) == before
    study = claim_output(tmp_path / "study", "run")
    (study / "results.tsv").write_text("x")
    with pytest.raises(OutputExistsError, match=r"holds the output of `medaug run` \(.medaug-run.json, results.tsv\)"):
        check_output(study, "preprocess")
    assert claim_output(study, "run") == study.resolve()  # its own folder: resumed
    assert (study / marker_name("run")).is_file() and marker_name("longitudinal fit") == ".medaug-longitudinal-fit.json"
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "checkpoint.pt").write_bytes(b"")
    assert check_output(legacy, "train-generator", own=lambda folder: (folder / "checkpoint.pt").is_file())
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputExistsError, match="is a file"):
        check_output(tmp_path / "file", "split")


def test_refused_commands_leave_the_input_dataset_byte_identical(tiny_cohort, tmp_path, capsys):
    bids = tmp_path / "bids"
    shutil.copytree(tiny_cohort[0], bids)
    (bids / "derivatives").mkdir(exist_ok=True)
    (tmp_path / "link").symlink_to(bids / "derivatives")
    before = snapshot(bids)
    study = tmp_path / "study.yaml"
    study.write_text(f"name: x\noutput: {bids}\ndata: {{bids: {bids}, labels: [CN, AD], positive: AD}}\n")
    assert f"is inside the input {bids}" in refused(capsys, ["run", str(study)])
    assert "is inside the input" in refused(capsys, ["preprocess", str(bids), str(bids / "derivatives" / "caps")])
    assert "is inside the input" in refused(capsys, ["predict", str(tmp_path / "no-study"), str(bids), "--out",
                                                     str(tmp_path / "link" / "p")])
    other = tmp_path / "other"  # another dataset given as the output of preprocess
    shutil.copytree(tiny_cohort[0], other)
    (other / ".bidsignore").write_text("extra/\n")
    other_before = snapshot(other)
    assert "did not write" in refused(capsys, ["preprocess", str(bids), str(other)])
    assert snapshot(bids) == before and snapshot(other) == other_before
    assert not list(tmp_path.rglob(LOG_FILE))  # no log anywhere: not in the inputs, not beside them


def test_every_writing_command_refuses_a_folder_of_other_files(private_folder, images, tiny_cohort, capsys):
    before = snapshot(private_folder)
    commands = {
        "preprocess": ["preprocess", str(tiny_cohort[0]), str(private_folder)],
        "train-generator": ["train-generator", str(images / "cohort.tsv"), "--label", "AD", "--model", "vae",
                            "--out", str(private_folder), "--config", str(images / "gen.yaml")],
        "split": ["split", str(images / "cohort.tsv"), "-o", str(private_folder), "--test-per-label", "1"],
        "example-cohort": ["example-cohort", str(private_folder)],
        "demo": ["demo", str(private_folder), "--config-only"],
        "longitudinal": ["longitudinal", "fit", str(images / "cohort.tsv"), "--label", "AD", "--out",
                         str(private_folder)],
    }
    for command, argv in commands.items():
        assert "did not write (.ssh, notes.txt)" in refused(capsys, argv)
        assert snapshot(private_folder) == before, command


def test_train_generator_refuses_an_unsafe_checkpoint_in_one_line(images, capsys):
    out = images / "model"
    command = ["train-generator", str(images / "cohort.tsv"), "--label", "AD", "--model", "vae", "--out", str(out),
               "--config", str(images / "gen.yaml")]
    assert main(command) == 0
    capsys.readouterr()

    class Evil:
        def __reduce__(self):
            return os.system, ("touch pwned",)

    torch.save({"model": Evil()}, out / "checkpoint.pt")
    line = refused(capsys, command)
    assert f"{out / 'checkpoint.pt'} was refused by torch.load(weights_only=True)" in line
    assert "delete it to start the training over" in line and "weights_only=False" not in line
    assert not (images / "pwned").exists()


@pytest.mark.parametrize("kind", ["yaml", "tsv"])
def test_binary_settings_and_tables_get_one_line(images, tmp_path, capsys, kind):
    binary = tmp_path / f"binary.{kind}"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    if kind == "yaml":
        cases = [["run", str(binary)],
                 ["train-generator", str(images / "cohort.tsv"), "--label", "AD", "--out", str(tmp_path / "m"),
                  "--config", str(binary)],
                 ["longitudinal", "fit", str(images / "cohort.tsv"), "--label", "AD", "--out", str(tmp_path / "l"),
                  "--config", str(binary)]]
    else:
        cases = [["train-generator", str(binary), "--label", "AD", "--out", str(tmp_path / "m")],
                 ["train-generator", str(images), "--labels", str(binary), "--label", "AD", "--out", str(tmp_path / "m")]]
    for argv in cases:
        assert f"{binary} is not UTF-8 text (byte 0x89" in refused(capsys, argv)
    assert not (tmp_path / "m").exists() and not (tmp_path / "l").exists()


def test_sizes_counts_templates_and_devices_are_checked_before_work(tiny_cohort, tmp_path, capsys):
    from medaug.study.config import StudyConfig

    base = {"name": "x", "output": "out", "data": {"bids": "b", "labels": ["CN", "AD"], "positive": "AD"}}
    with pytest.raises(ConfigError, match="preprocessing.size: each axis must be from 1 to the crop grid's "
                                          "169×208×179, got 100000×100000×100000"):
        StudyConfig.from_dict({**base, "preprocessing": {"size": [100000, 100000, 100000]}})
    StudyConfig.from_dict({**base, "preprocessing": {"size": [169, 208, 179]}})
    for argv, message in ((["preprocess", str(tiny_cohort[0]), str(tmp_path / "c"), "--size", "100000,9,9"],
                           "each axis must be from 1"),
                          (["generate", str(tmp_path / "m"), "-n", "100000000000", "--out", str(tmp_path / "s")],
                           "at most 100000 images per call")):
        assert message in refused(capsys, argv)
    garbage = tmp_path / "tpl-X_T1w.nii.gz"
    garbage.write_bytes(b"not an image")
    assert f"cannot read the template {garbage} as NIfTI" in refused(
        capsys, ["preprocess", str(tiny_cohort[0]), str(tmp_path / "c"), "--template", str(garbage)])
    line = refused(capsys, ["preprocess", str(tiny_cohort[0]), str(tmp_path / "c"), "--participant", "sub-NOPE",
                            "../../etc"])
    assert "--participant sub-../../etc, sub-NOPE: no T1w image of" in line and "check the id" in line
    assert not (tmp_path / "c").exists()
    torch_cuda = torch.cuda.is_available
    try:
        torch.cuda.is_available = lambda: False
        line = refused(capsys, ["predict", str(tmp_path / "study"), str(tiny_cohort[0]), "--out", str(tmp_path / "p"),
                                "--device", "cuda"])
    finally:
        torch.cuda.is_available = torch_cuda
    assert "sees no CUDA GPU; install a CUDA build" in line
    assert not (tmp_path / "p").exists()


def test_caps_images_off_the_crop_grid_are_refused_by_name(tmp_path):
    from medaug.data.clinica import caps_t1_linear_path, read_caps_t1_linear

    caps = tmp_path / "caps"
    path = caps_t1_linear_path(caps, "sub-01", "ses-M000")
    path.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.zeros((60, 70, 50), np.uint8), np.eye(4)), path)
    with pytest.raises(InputDataError, match=rf"1 t1-linear crop image\(s\) are not on the 169×208×179 crop grid: "
                                             rf"{path.name} \(60×70×50\); rerun t1-linear"):
        read_caps_t1_linear(caps)


def test_interpret_refuses_a_test_stack_of_another_shape(tmp_path):
    from medaug.study.interpret import split_images

    (tmp_path / "images").mkdir()
    pd.DataFrame({"participant_id": ["sub-01", "sub-02"]}).to_csv(tmp_path / "images" / "test.tsv", sep="\t",
                                                                    index=False)
    np.save(tmp_path / "images" / "test.npy", np.zeros((2, 1, 5, 5, 5), np.float16))
    assert len(split_images(tmp_path, "test", (5, 5, 5))[0]) == 2
    with pytest.raises(InputDataError, match=r"test.npy holds 2 image\(s\) of 5×5×5 voxels, where the study has 2 of "
                                             r"6×5×5 .* delete it and rerun `medaug run`"):
        split_images(tmp_path, "test", (6, 5, 5))
