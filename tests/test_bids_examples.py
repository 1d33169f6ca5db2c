import hashlib
import json
import shutil
from pathlib import Path

import pytest

from medaug.simulation.example_cohort import ExampleCohortConfig, build_example_cohort

EXAMPLE = Path(__file__).resolve().parents[1] / "bids_examples" / "simulated_cn_ad"


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_committed_example_is_regenerated_identically(tmp_path):
    """Every table, sidecar and transform byte for byte; images voxel for voxel, except that a few
    voxels may round to the neighbouring int16 level: the float simulation differs in its last bits
    across CPUs and library builds (seen: 6e-6 of the voxels, by 1 level, on another machine)."""
    import nibabel as nib
    import numpy as np

    recorded = json.loads((EXAMPLE / "code" / "medaug_example_cohort.json").read_text())
    config = ExampleCohortConfig.from_dict(recorded["config"])
    build_example_cohort(tmp_path / "again", config, jobs=2)
    again, committed = _files(tmp_path / "again"), _files(EXAMPLE)
    assert set(again) == set(committed)
    images = [name for name in committed if name.endswith(".nii.gz")]
    assert {k: v for k, v in again.items() if k not in images} == {k: v for k, v in committed.items() if k not in images}
    for name in images:
        new, old = nib.load(tmp_path / "again" / name), nib.load(EXAMPLE / name)
        assert new.get_data_dtype() == old.get_data_dtype() and np.array_equal(new.affine, old.affine), name
        difference = np.abs(np.asarray(new.dataobj, dtype=np.int32) - np.asarray(old.dataobj, dtype=np.int32))
        assert difference.max() <= 1 and (difference > 0).mean() < 1e-4, name


def test_committed_example_is_valid_bids(validator_errors):
    assert validator_errors(EXAMPLE) == []


def test_fresh_cohort_is_valid_bids(tiny_cohort, validator_errors):
    out, _ = tiny_cohort
    assert validator_errors(out) == []


def test_validator_catches_a_broken_dataset(tiny_cohort, tmp_path, validator_errors):
    """The validator check can fail: a dataset without dataset_description.json is an error."""
    broken = tmp_path / "broken"
    shutil.copytree(tiny_cohort[0], broken)
    (broken / "dataset_description.json").unlink()
    assert validator_errors(broken) != []
