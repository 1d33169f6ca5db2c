import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medaug.data.example_cohort import ExampleCohortConfig, build_example_cohort

EXAMPLE = Path(__file__).resolve().parents[1] / "bids_examples" / "simulated_cn_ad"
# installed next to the interpreter by the `test` extra, even when that folder is not on PATH
VALIDATOR = shutil.which("bids-validator-deno", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _validator_errors(folder: Path) -> list[dict]:
    if VALIDATOR is None:
        pytest.skip("bids-validator-deno is not installed (pip install -e '.[test]')")
    run = subprocess.run([VALIDATOR, str(folder), "--recursive", "--format", "json"],
                         capture_output=True, text=True, timeout=300)
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        pytest.skip(f"bids-validator-deno could not run here: {run.stderr.strip()[:300]}")
    return [issue for issue in report["issues"]["issues"] if issue["severity"] == "error"]


@pytest.mark.slow
def test_committed_example_is_regenerated_bit_identically(tmp_path):
    recorded = json.loads((EXAMPLE / "code" / "medaug_example_cohort.json").read_text())
    config = ExampleCohortConfig.from_dict(recorded["config"])
    build_example_cohort(tmp_path / "again", config, jobs=2)
    assert _files(tmp_path / "again") == _files(EXAMPLE)


def test_committed_example_is_valid_bids():
    assert _validator_errors(EXAMPLE) == []


def test_fresh_cohort_is_valid_bids(tiny_cohort):
    out, _ = tiny_cohort
    assert _validator_errors(out) == []


def test_validator_catches_a_broken_dataset(tiny_cohort, tmp_path):
    """The validator check can fail: a dataset without dataset_description.json is an error."""
    broken = tmp_path / "broken"
    shutil.copytree(tiny_cohort[0], broken)
    (broken / "dataset_description.json").unlink()
    assert _validator_errors(broken) != []
