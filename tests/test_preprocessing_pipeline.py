"""t1-linear end to end on the tiny simulated cohort (4 mm) against its ground-truth poses, and bad input."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from monai.data import MetaTensor

from medaug.cli import main
from medaug.data.clinica import read_caps_t1_linear
from medaug.data.cohort import load_cohort
from medaug.data.dataset import LoadT1wd
from medaug.simulation.example_cohort import read_scanner_to_template
from medaug.errors import ConfigError, OutputExistsError
from medaug.preprocessing.pipeline import output_transforms, T1LinearConfig, t1_linear
from medaug.preprocessing.registration import RegistrationConfig
from medaug.preprocessing.runner import preprocess_cohort
from medaug.preprocessing.template import CLINICA_CROP_AFFINE, CLINICA_CROP_SHAPE
from medaug.preprocessing.transforms import TRANSFORM_KEY, RegistrationQCd

FAST = RegistrationConfig(rigid_shrink=(4, 2), rigid_sigmas_mm=(6.0, 3.0), affine_shrink=(2, 1),
                          affine_sigmas_mm=(3.0, 0.0), iterations=100, sampling_fraction=0.3)


@pytest.fixture(scope="module")
def template_file(small_template, tmp_path_factory):
    path = tmp_path_factory.mktemp("tpl") / "tpl-MNI152NLin2009aAsym_res-3_T1w.nii.gz"
    nib.save(nib.Nifti1Image(small_template.voxels, small_template.affine), path)
    return path


def _config(template_file, **changes):
    return T1LinearConfig(template=str(template_file), n4_shrink_factor=2, registration=FAST,
                          **{"size": (21, 26, 22), **changes})


def _mean_error(template_to_image, truth_scanner_to_template, template):
    brain = np.argwhere(template.brain_mask)
    points = template.affine @ np.c_[brain, np.ones(len(brain))].T
    return np.linalg.norm((template_to_image - np.linalg.inv(truth_scanner_to_template)) @ points, axis=0).mean()


def _bad_images(folder):
    folder.mkdir()
    (folder / "empty.nii.gz").write_bytes(b"")
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 2), np.float32), np.eye(4)), folder / "four_d.nii.gz")
    nib.save(nib.Nifti1Image(np.full((40, 40, 40), 7.0, np.float32), np.diag([4.0, 4, 4, 1])), folder / "blank.nii.gz")
    rng = np.random.default_rng(0)
    noise = rng.random((40, 40, 40)).astype(np.float32) * 100
    nib.save(nib.Nifti1Image(noise, np.diag([4.0, 4, 4, 1])), folder / "noise.nii.gz")
    return {name: str(folder / f"{name}.nii.gz") for name in ("empty", "four_d", "blank", "noise")}


def test_batch_registers_good_images_and_records_bad_ones(tiny_cohort, template_file, small_template, tmp_path):
    bids, _ = tiny_cohort
    cohort = load_cohort(bids)
    good = cohort[cohort["session_id"] == "ses-M000"].head(2)
    bad = _bad_images(tmp_path / "bad")
    bad_rows = pd.DataFrame([{"participant_id": f"sub-BAD{name}", "session_id": "ses-M000", "path": path}
                             for name, path in bad.items()])
    table = pd.concat([good[["participant_id", "session_id", "path"]], bad_rows], ignore_index=True)
    caps = tmp_path / "caps"
    qc = preprocess_cohort(table, caps, _config(template_file), sources=[bids]).set_index("participant_id")

    assert set(qc.loc[good["participant_id"], "status"]) == {"ok"}
    assert qc.loc["sub-BADempty", "status"] == "failed" and "0-byte" in qc.loc["sub-BADempty", "reason"]
    assert qc.loc["sub-BADfour_d", "status"] == "failed" and "3D T1w image is expected" in qc.loc["sub-BADfour_d", "reason"]
    assert qc.loc["sub-BADblank", "status"] == "failed" and "constant image (all voxels 7)" in qc.loc["sub-BADblank", "reason"]
    assert qc.loc["sub-BADnoise", "status"] in ("flagged", "failed") and qc.loc["sub-BADnoise", "reason"]
    assert (caps / "t1_linear_qc.tsv").exists()

    # outputs on the Clinica crop grid, found by the CAPS reader, transforms close to the truth
    images = read_caps_t1_linear(caps)
    assert set(images["participant_id"]) >= set(good["participant_id"])
    for row in good.itertuples():
        found = images[images["participant_id"] == row.participant_id].iloc[0]
        assert found["space"] == "MNI152NLin2009aAsym"
        image = nib.load(found["path"])
        assert image.shape == CLINICA_CROP_SHAPE
        np.testing.assert_allclose(image.affine, CLINICA_CROP_AFFINE)
        xfm = next((caps / "subjects" / row.participant_id / "ses-M000" / "t1_linear").glob("*_xfm.txt"))
        error = _mean_error(np.loadtxt(xfm), read_scanner_to_template(bids, row.participant_id, "ses-M000"),
                            small_template)
        assert error < 4.0  # under one voxel of the 4 mm input
        sidecar = json.loads(xfm.parent.joinpath(found["path"].split("/")[-1].replace(".nii.gz", ".json")).read_text())
        assert sidecar["QC"]["pass"] and sidecar["Sources"] == [f"file://{row.path}"]
    resized = read_caps_t1_linear(caps, resolution="21x26x22")
    data = nib.load(resized["path"].iloc[0]).get_fdata()
    assert data.shape == (21, 26, 22) and data.min() == 0.0 and data.max() == pytest.approx(1.0)

    # resume: finished images are skipped (files untouched), failures retried; other settings refused
    first = images["path"].iloc[0]
    stamp = (caps / first).stat().st_mtime_ns
    again = preprocess_cohort(table, caps, _config(template_file), sources=[bids]).set_index("participant_id")
    assert (caps / first).stat().st_mtime_ns == stamp
    assert (again.loc[good["participant_id"], "seconds"] == 0.0).all()
    pd.testing.assert_series_equal(again["status"], qc["status"])
    with pytest.raises(OutputExistsError, match="other parameters"):
        preprocess_cohort(table, caps, _config(template_file, min_ncc=0.9), sources=[bids])
    # a new size reuses the registrations: only the resized copies are written, equal to resizing the 1 mm image
    preprocess_cohort(table, caps, _config(template_file, size=(10, 13, 11)), sources=[bids])
    assert (caps / first).stat().st_mtime_ns == stamp
    small = read_caps_t1_linear(caps, resolution="10x13x11")
    assert set(small["participant_id"]) == set(images["participant_id"])
    expected = output_transforms((10, 13, 11))({"image": LoadT1wd()({"image": images["path"].iloc[0]})["image"]})
    np.testing.assert_allclose(nib.load(small["path"].iloc[0]).get_fdata(), expected["image"][0].numpy(), atol=1e-5)
    with pytest.raises(Exception, match="overlaps the input dataset"):
        preprocess_cohort(table, bids / "derivatives" / "caps", _config(template_file), sources=[bids])


def test_without_crop_images_only_the_resized_copy_is_kept_and_marks_the_image_finished(
        tiny_cohort, template_file, tmp_path):
    bids, _ = tiny_cohort
    table = load_cohort(bids).head(1)[["participant_id", "session_id", "path"]]
    caps = tmp_path / "caps"
    qc = preprocess_cohort(table, caps, _config(template_file, write_crop=False), sources=[bids])
    assert list(qc["status"]) == ["ok"]
    assert not list(caps.rglob("*res-1x1x1_T1w.nii.gz"))       # no 1 mm crop image
    resized = read_caps_t1_linear(caps, resolution="21x26x22")
    assert len(resized) == 1 and qc["path"].iloc[0] == resized["path"].iloc[0]
    stamp = Path(resized["path"].iloc[0]).stat().st_mtime_ns
    again = preprocess_cohort(table, caps, _config(template_file, write_crop=False), sources=[bids])
    assert again["seconds"].iloc[0] == 0.0 and Path(resized["path"].iloc[0]).stat().st_mtime_ns == stamp
    # another size cannot be resized from a crop that was not kept: the image is registered again
    other = preprocess_cohort(table, caps, _config(template_file, write_crop=False, size=(10, 13, 11)), sources=[bids])
    assert other["seconds"].iloc[0] > 0.0 and len(read_caps_t1_linear(caps, resolution="10x13x11")) == 1
    with pytest.raises(ConfigError, match="needs a size"):
        T1LinearConfig(write_crop=False, size=None)


def test_same_seed_gives_the_same_transform(tiny_cohort, template_file):
    path = load_cohort(tiny_cohort[0])["path"][0]
    pipeline = t1_linear(_config(template_file), resize_and_rescale=False)
    first = pipeline(LoadT1wd()({"image": path}))
    second = pipeline(LoadT1wd()({"image": path}))
    np.testing.assert_array_equal(first[TRANSFORM_KEY], second[TRANSFORM_KEY])
    assert first["qc_pass"]


def test_qc_flags_a_diverged_registration(small_template):
    qc = RegistrationQCd(small_template)
    image = MetaTensor(torch.from_numpy(qc.reference)[None], affine=torch.as_tensor(CLINICA_CROP_AFFINE))
    good = qc({"image": image, TRANSFORM_KEY: np.eye(4)})
    assert good["qc_pass"] and good["qc_ncc"] == pytest.approx(1.0)
    diverged = qc({"image": image, TRANSFORM_KEY: np.diag([3.0, 3.0, 3.0, 1.0])})
    assert not diverged["qc_pass"] and "diverged" in diverged["qc_reason"]
    shifted = qc({"image": MetaTensor(torch.roll(image.as_tensor(), 12, dims=1), affine=image.affine), TRANSFORM_KEY: np.eye(4)})
    assert not shifted["qc_pass"] and "NCC" in shifted["qc_reason"]


def test_preprocess_command_writes_caps_and_qc(tiny_cohort, template_file, tmp_path, capsys):
    bids, truth = tiny_cohort
    participant = truth["participant_id"].iloc[0]
    assert main(["preprocess", str(bids), str(tmp_path / "caps"), "--template", str(template_file),
                 "--participant", participant, "--size", "21,26,22"]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "QC table" in out
    qc = pd.read_csv(tmp_path / "caps" / "t1_linear_qc.tsv", sep="\t")
    assert set(qc["participant_id"]) == {participant} and (qc["status"] == "ok").all()
    with pytest.raises(SystemExit) as exit_info:
        main(["preprocess", str(bids), str(tmp_path / "c2"), "--size", "84,104"])
    assert exit_info.value.code == 2
