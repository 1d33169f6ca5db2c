import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from monai.data import DataLoader, MetaTensor
from monai.transforms import Lambdad, ScaleIntensityd

from medaug.data.cohort import load_cohort
from medaug.data.dataset import cohort_dataset, cohort_records, label_codes
from medaug.errors import InputDataError


def test_label_codes_put_cn_first():
    assert label_codes(["AD", "CN", "MCI", "AD"]) == {"CN": 0, "AD": 1, "MCI": 2}


def test_dataset_over_simulated_cohort_keeps_affine_and_labels(tiny_cohort):
    cohort = load_cohort(tiny_cohort[0])
    dataset = cohort_dataset(cohort, [ScaleIntensityd("image")])
    item = dataset[0]
    assert isinstance(item["image"], MetaTensor) and item["image"].ndim == 4
    assert float(item["image"].max()) == pytest.approx(1.0) and float(item["image"].min()) == pytest.approx(0.0)
    reference = nib.as_closest_canonical(nib.load(cohort["path"][0]))
    np.testing.assert_allclose(item["image"].affine.numpy(), reference.affine, atol=1e-5)
    assert item["label"] == {"CN": 0, "AD": 1}[cohort["diagnosis"][0]]
    assert item["participant_id"] == cohort["participant_id"][0]
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch["image"].shape[:2] == (2, 1) and batch["label"].dtype == torch.int64


def test_persistent_cache_rebuilds_when_transforms_change(tmp_path):
    path = tmp_path / "a.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(8, dtype=np.float32).reshape(2, 2, 2), np.diag([-2.0, 1, 1, 1])), path)
    cohort = pd.DataFrame({"participant_id": ["sub-01"], "session_id": ["ses-M000"], "diagnosis": ["AD"],
                           "age": [70.0], "sex": ["F"], "site": [None], "path": [str(path)]})
    times = lambda k: Lambdad("image", lambda x: x * k)  # noqa: E731
    first = cohort_dataset(cohort, [times(2)], cache_dir=tmp_path / "cache")[0]["image"]
    again = cohort_dataset(cohort, [times(2)], cache_dir=tmp_path / "cache")[0]["image"]
    assert torch.equal(first, again) and torch.equal(first.affine, again.affine)
    assert first.affine[0, 0] == 2.0  # reoriented to RAS, survived the cache round trip
    changed = cohort_dataset(cohort, [ScaleIntensityd("image")], cache_dir=tmp_path / "cache")[0]["image"]
    assert float(changed.max()) == 1.0
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


def test_records_and_loader_reject_bad_rows(tmp_path):
    cohort = pd.DataFrame({"participant_id": ["sub-01"], "session_id": ["ses-M0"], "diagnosis": ["MCI"],
                           "age": [70.0], "sex": ["F"], "site": ["S1"], "path": [str(tmp_path / "e.nii.gz")]})
    with pytest.raises(InputDataError, match="sub-01 ses-M0: diagnosis 'MCI' is not among"):
        cohort_records(cohort, {"CN": 0, "AD": 1})
    with pytest.raises(InputDataError, match="sub-01 has no diagnosis"):
        cohort_records(cohort.assign(diagnosis=None))
    (tmp_path / "e.nii.gz").write_bytes(b"")
    with pytest.raises(InputDataError, match="e.nii.gz is an empty"):
        cohort_dataset(cohort)[0]
