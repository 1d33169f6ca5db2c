"""Per-image limits of `medaug preprocess`: time limit (killed worker), header guards, constant images,
the QC table written as images finish, and Ctrl-C leaving no worker behind."""

import json
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medaug.errors import ConfigError, InputDataError, OutputExistsError
from medaug.preprocessing import runner
from medaug.preprocessing.images import image_stream, load_resized
from medaug.preprocessing.pipeline import T1LinearConfig
from medaug.preprocessing.registration import RegistrationConfig

FAST = RegistrationConfig(rigid_shrink=(4, 2), rigid_sigmas_mm=(6.0, 3.0), affine_shrink=(2, 1),
                          affine_sigmas_mm=(3.0, 0.0), iterations=100, sampling_fraction=0.3)
REAL_PROCESS_IMAGE = runner.process_image


def _scripted(row: dict, caps_dir: str, sources: list[str]) -> dict:
    """Test worker: sub-SLOW hangs (its pid written first), sub-QUICK is done at once, others run for real."""
    if row["participant_id"] == "sub-SLOW":
        Path(caps_dir, "slow.pid").write_text(str(os.getpid()))
        time.sleep(60)
    if row["participant_id"] == "sub-QUICK":
        return runner._qc_row(row, "ok", None, "", 0.0, "")
    return REAL_PROCESS_IMAGE(row, caps_dir, sources)


@pytest.fixture(scope="module")
def template_file(small_template, tmp_path_factory):
    path = tmp_path_factory.mktemp("tpl") / "tpl-MNI152NLin2009aAsym_res-3_T1w.nii.gz"
    nib.save(nib.Nifti1Image(small_template.voxels, small_template.affine), path)
    return path


def _config(template_file, **changes) -> T1LinearConfig:
    return T1LinearConfig(template=str(template_file), n4_shrink_factor=2, registration=FAST, **changes)


def _image(folder: Path, name: str, voxels: np.ndarray, spacing_mm: float = 4.0) -> dict:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(voxels, np.diag([spacing_mm] * 3 + [1.0])), path)
    return {"participant_id": f"sub-{name}", "session_id": "ses-M000", "path": str(path)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed child not yet reaped by the forkserver is a zombie: gone too
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc (macOS): os.kill found it


def _gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_limits_round_trip_are_validated_and_are_not_registration_parameters():
    config = T1LinearConfig(max_seconds_per_image=30.0, max_memory_gb=2.0, spacing_range_mm=(0.1, 5.0),
                            max_field_of_view_mm=400.0)
    assert T1LinearConfig.from_dict(config.to_dict()) == config
    assert config.registration_parameters() == T1LinearConfig().registration_parameters()
    assert config.registration_parameters() != T1LinearConfig(min_ncc=0.9).registration_parameters()
    for bad in ({"max_seconds_per_image": 0.0}, {"max_memory_gb": -1.0}, {"spacing_range_mm": (5.0, 1.0)},
                {"max_field_of_view_mm": 0.0}, {"max_seconds_per_image": float("inf")}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            T1LinearConfig(**bad)


def test_header_guards_fail_images_before_any_worker_starts(template_file, tmp_path, monkeypatch):
    def no_worker(*_):
        raise AssertionError("a worker was started for an image the header rules out")

    monkeypatch.setattr(runner, "_worker_pool", no_worker)
    images = tmp_path / "images"
    table = pd.DataFrame([_image(images, "HUGEVOXELS", np.zeros((8, 8, 8), np.uint8), spacing_mm=50.0),
                          _image(images, "WIDE", np.zeros((100, 20, 20), np.uint8), spacing_mm=8.0),
                          _image(images, "BIG", np.zeros((64, 64, 64), np.uint8), spacing_mm=1.0)])
    caps = tmp_path / "caps"
    qc = runner.preprocess_cohort(table, caps, _config(template_file, max_memory_gb=0.005)).set_index("participant_id")

    assert (qc["status"] == "failed").all()
    assert "voxel spacing 50 x 50 x 50 mm" in qc.loc["sub-HUGEVOXELS", "reason"]
    assert "spacing_range_mm" in qc.loc["sub-HUGEVOXELS", "reason"]
    assert "field of view 800 x 160 x 160 mm" in qc.loc["sub-WIDE", "reason"]
    assert "max_field_of_view_mm 600" in qc.loc["sub-WIDE", "reason"]
    assert "64x64x64 voxels need about 0.013 GB" in qc.loc["sub-BIG", "reason"]
    assert "max_memory_gb 0.005" in qc.loc["sub-BIG", "reason"]
    written = pd.read_csv(caps / runner.QC_FILE, sep="\t")
    assert list(written["participant_id"]) == ["sub-BIG", "sub-HUGEVOXELS", "sub-WIDE"]
    # the limits may change between runs (to retry refused images); registration parameters may not
    again = runner.preprocess_cohort(table, caps, _config(template_file, max_memory_gb=0.005, max_seconds_per_image=5.0))
    assert (again["status"] == "failed").all()
    with pytest.raises(OutputExistsError, match="other parameters"):
        runner.preprocess_cohort(table, caps, _config(template_file, min_ncc=0.9))


def test_time_limit_kills_an_image_and_the_batch_goes_on(template_file, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "process_image", _scripted)
    writes = []
    write_tsv = runner.write_tsv
    monkeypatch.setattr(runner, "write_tsv", lambda path, table: (writes.append(len(table)), write_tsv(path, table)))
    images = tmp_path / "images"
    noise = np.random.default_rng(0).random((24, 24, 24), dtype=np.float32)
    table = pd.DataFrame([_image(images, "QUICK", noise), _image(images, "ZERO", np.zeros((24, 24, 24), np.float32)),
                          _image(images, "SLOW", noise)])
    start = time.monotonic()
    qc = runner.preprocess_cohort(table, tmp_path / "caps", _config(template_file, max_seconds_per_image=1.0))
    qc = qc.set_index("participant_id")

    assert time.monotonic() - start < 30
    assert qc.loc["sub-QUICK", "status"] == "ok"
    assert qc.loc["sub-SLOW", "status"] == "failed"
    assert "over the 1 s time limit (max_seconds_per_image)" in qc.loc["sub-SLOW", "reason"]
    assert qc.loc["sub-ZERO", "status"] == "failed"
    assert "constant image (all voxels 0)" in qc.loc["sub-ZERO", "reason"]
    assert _gone(int((tmp_path / "caps" / "slow.pid").read_text()))
    # the QC table grows as images finish (one row, two, three), then the complete, sorted table
    assert writes == [1, 2, 3, 3]
    written = pd.read_csv(tmp_path / "caps" / runner.QC_FILE, sep="\t")
    assert list(written["participant_id"]) == ["sub-QUICK", "sub-SLOW", "sub-ZERO"]


def test_ctrl_c_stops_the_workers_and_leaves_the_qc_table_of_finished_images(template_file, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "process_image", _scripted)
    ctrl_c = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    write_tsv = runner.write_tsv

    def write_then_press_ctrl_c(path, table):  # Ctrl-C while the batch waits on the hanging image
        write_tsv(path, table)
        ctrl_c.start()

    monkeypatch.setattr(runner, "write_tsv", write_then_press_ctrl_c)
    images = tmp_path / "images"
    noise = np.random.default_rng(0).random((16, 16, 16), dtype=np.float32)
    table = pd.DataFrame([_image(images, "QUICK", noise), _image(images, "SLOW", noise)])
    caps = tmp_path / "caps"
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.preprocess_cohort(table, caps, _config(template_file))
    finally:
        ctrl_c.cancel()

    assert multiprocessing.active_children() == []
    assert _gone(int((caps / "slow.pid").read_text()))
    written = pd.read_csv(caps / runner.QC_FILE, sep="\t")
    assert list(written["participant_id"]) == ["sub-QUICK"] and list(written["status"]) == ["ok"]


def test_constant_image_is_refused_by_the_image_stream(tmp_path):
    row = _image(tmp_path, "ZERO", np.zeros((12, 12, 12), np.float32))
    with pytest.raises(InputDataError, match=r"ZERO\.nii\.gz is a constant image \(all voxels 0\)"):
        load_resized(row["path"], (8, 8, 8))
    seven = _image(tmp_path, "SEVEN", np.full((12, 12, 12), 7.0, np.float32))
    with pytest.raises(InputDataError, match=r"SEVEN\.nii\.gz is a constant image \(all voxels 7\)"):
        next(image_stream([seven["path"]], None))


def test_a_replaced_source_image_is_preprocessed_again(template_file, small_template, tmp_path, caplog):
    """Never a stale CAPS image: the sidecar records the source's size and mtime; a new file under the
    same name is redone, an unchanged one is skipped."""
    voxels = np.asarray(small_template.voxels, np.float32)
    row = _image(tmp_path / "raw", "A", voxels, spacing_mm=3.0)
    caps = tmp_path / "caps"
    first = runner.preprocess_cohort(pd.DataFrame([row]), caps, _config(template_file))
    assert first["status"].iloc[0] in ("ok", "flagged") and first["seconds"].iloc[0] > 0
    output = Path(first["path"].iloc[0])
    recorded = json.loads(output.with_name(output.name.replace(".nii.gz", ".json")).read_text())["SourceSignature"]
    again = runner.preprocess_cohort(pd.DataFrame([row]), caps, _config(template_file))
    assert again["seconds"].iloc[0] == 0  # unchanged: skipped
    time.sleep(0.01)
    _image(tmp_path / "raw", "A", np.roll(voxels, 2, axis=0), spacing_mm=3.0)  # another image, same path
    with caplog.at_level("WARNING"):
        redone = runner.preprocess_cohort(pd.DataFrame([row]), caps, _config(template_file))
    assert "changed (size or modification time) since it was preprocessed" in caplog.text
    assert redone["seconds"].iloc[0] > 0
    now = json.loads(output.with_name(output.name.replace(".nii.gz", ".json")).read_text())["SourceSignature"]
    assert now != recorded and now == [os.stat(row["path"]).st_size, os.stat(row["path"]).st_mtime_ns]


def test_preprocess_exits_non_zero_when_every_image_failed(tmp_path, capsys):
    from medaug.cli import main

    bids = tmp_path / "bids"
    (bids / "sub-01/anat").mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    voxels = np.random.default_rng(0).random((8, 8, 8), dtype=np.float32)
    nib.save(nib.Nifti1Image(voxels, np.diag([50.0, 50.0, 50.0, 1.0])), bids / "sub-01/anat/sub-01_T1w.nii.gz")
    assert main(["preprocess", str(bids), str(tmp_path / "caps")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("medaug preprocess: error: every image failed t1-linear (1 of 1")
    assert "sub-01: voxel spacing 50 x 50 x 50 mm is implausible" in error
    assert pd.read_csv(tmp_path / "caps" / runner.QC_FILE, sep="\t")["status"].tolist() == ["failed"]
