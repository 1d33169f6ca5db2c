import hashlib
import json
import shutil
from pathlib import Path

import pytest

from medaug.data.example_cohort import ExampleCohortConfig, build_example_cohort

EXAMPLE = Path(__file__).resolve().parents[1] / "bids_examples" / "simulated_cn_ad"


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_committed_example_is_regenerated_bit_identically(tmp_path):
    recorded = json.loads((EXAMPLE / "code" / "medaug_example_cohort.json").read_text())
    config = ExampleCohortConfig.from_dict(recorded["config"])
    build_example_cohort(tmp_path / "again", config, jobs=2)
    assert _files(tmp_path / "again") == _files(EXAMPLE)


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
