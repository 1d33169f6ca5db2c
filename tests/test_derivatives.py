import json

import nibabel as nib
import numpy as np
import pytest

from medaug.data.derivatives import DerivativeDataset, bids_name
from medaug.errors import ConfigError, OutputExistsError


def test_bids_name_orders_entities():
    assert bids_name("T1w", ".nii.gz", desc="synthetic", ses="M000", sub="01", space="MNI152NLin2009cSym",
                     res="1x1x1") == "sub-01_ses-M000_space-MNI152NLin2009cSym_res-1x1x1_desc-synthetic_T1w.nii.gz"
    with pytest.raises(ConfigError, match="alphanumeric"):
        bids_name("T1w", ".nii.gz", sub="0_1")
    with pytest.raises(ConfigError, match="unsupported"):
        bids_name("T1w", ".nii.gz", sub="01", foo="x")


def test_written_derivative_keeps_affine_and_is_valid_bids(tiny_cohort, tmp_path, validator_errors):
    source = tiny_cohort[0]
    derivative = DerivativeDataset(tmp_path / "synthetic", "medaug-synthetic", sources=[source],
                                   description="synthetic images")
    affine = np.array([[0, 0, -2.0, 90], [2.0, 0, 0, -120], [0, 2.0, 0, -80], [0, 0, 0, 1]])
    data = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    path = derivative.path("sub-SYN0001", "ses-M000", desc="synthetic")
    derivative.write_image(path, data, affine, {"Synthetic": True, "Seed": 3}, sources=[source / "README"])
    image = nib.load(path)
    np.testing.assert_allclose(image.affine, affine)
    np.testing.assert_array_equal(image.get_fdata(dtype=np.float32), data)
    sidecar = json.loads(path.with_name("sub-SYN0001_ses-M000_desc-synthetic_T1w.json").read_text())
    assert sidecar["Synthetic"] is True and sidecar["GeneratedBy"][0]["Name"] == "medaug"
    assert sidecar["Sources"] == [(source / "README").resolve().as_uri()]
    description = json.loads((tmp_path / "synthetic" / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "medaug"
    assert not list(tmp_path.glob("synthetic/**/*.tmp*"))
    assert validator_errors(tmp_path / "synthetic") == []


def test_derivative_never_inside_inputs_nor_over_them(tmp_path):
    source = tmp_path / "bids"
    source.mkdir()
    with pytest.raises(ConfigError, match="overlaps the input dataset"):
        DerivativeDataset(source / "derivatives" / "medaug", "x", sources=[source])
    derivative = DerivativeDataset(tmp_path / "out", "x", sources=[source])
    with pytest.raises(ConfigError, match="outside the derivative dataset"):
        derivative.write_image(source / "a.nii.gz", np.zeros((2, 2, 2)), np.eye(4), {})
    victim = derivative.path("sub-01", None)
    with pytest.raises(OutputExistsError, match="refusing to overwrite the input image"):
        derivative.write_image(victim, np.zeros((2, 2, 2)), np.eye(4), {}, sources=[victim])
    with pytest.raises(OutputExistsError, match="already holds dataset 'x'"):
        DerivativeDataset(tmp_path / "out", "other")
