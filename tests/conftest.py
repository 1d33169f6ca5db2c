import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medaug.simulation.example_cohort import ExampleCohortConfig, build_example_cohort

TINY = dict(subjects_per_label=3, resolution_mm=4.0, sessions=("M000", "M012", "M024"), missing_rate=0.3, seed=7)
# installed next to the interpreter by the `test` extra, even when that folder is not on PATH
VALIDATOR = shutil.which("bids-validator-deno", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory):
    """A tiny longitudinal CN/AD cohort at 4 mm, built once per test session."""
    out = tmp_path_factory.mktemp("cohort") / "bids"
    truth = build_example_cohort(out, ExampleCohortConfig(**TINY))
    return out, truth


@pytest.fixture
def validator_errors():
    """Run bids-validator-deno on a folder and return its error-level issues (skip if unavailable)."""
    if VALIDATOR is None:
        pytest.skip("bids-validator-deno is not installed (pip install -e '.[test]')")

    def errors(folder: Path) -> list[dict]:
        run = subprocess.run([VALIDATOR, str(folder), "--recursive", "--format", "json"],
                             capture_output=True, text=True, timeout=300)
        try:
            report = json.loads(run.stdout)
        except json.JSONDecodeError:
            pytest.skip(f"bids-validator-deno could not run here: {run.stderr.strip()[:300]}")
        return [issue for issue in report["issues"]["issues"] if issue["severity"] == "error"]

    return errors


@pytest.fixture(scope="session")
def small_template():
    """nilearn's MNI152 template on a 3 mm grid (fast registrations in tests)."""
    from medaug.preprocessing.template import load_registration_template, resample_template

    return resample_template(load_registration_template(), 3.0)


@pytest.fixture(scope="session")
def study_cohort(tmp_path_factory):
    """A 5 + 5 subject CN/AD cohort at 6 mm with a strong effect, for tiny augmentation studies."""
    out = tmp_path_factory.mktemp("study") / "bids"
    build_example_cohort(out, ExampleCohortConfig(subjects_per_label=5, resolution_mm=6.0, seed=3, effect=3.0))
    return out


@pytest.fixture
def study_config():
    """Factory of tiny study configs: ``study_config(bids, output, **top_level_changes)``."""
    from medaug.study.config import StudyConfig

    def make(bids, output, **changes):
        data = {"name": "tiny", "output": str(output), "seed": 0,
                "data": {"bids": str(bids), "labels": ["CN", "AD"], "positive": "AD"},
                "preprocessing": {"enabled": False, "size": [12, 14, 12]},
                "split": {"test_per_label": 1, "p_threshold": 0.0},
                "generator": {"model": "rhvae", "latent_dim": 2, "hidden": [32], "options": {"metric_hidden": 16}},
                "trainer": {"max_steps": 3, "batch_size": 4},
                "samplers": [{"name": "prior"}, {"name": "rhvae-hmc", "options": {"steps": 5, "leapfrog_steps": 3}}],
                "conditions": ["real", {"kind": "synthetic", "options": {"per_class": [4]}},
                               {"kind": "real+synthetic", "options": {"per_class": [4]}},
                               {"kind": "classic", "options": {"copies": [1]}}],
                "classifiers": [{"name": "cnn", "options": {"training": {"epochs": 2, "batch_size": 4}}}, "sklearn-knn"],
                "runs": 2,
                "allow_uninformative_generators": True}  # 3-epoch generators on 4 images are collapsed
        return StudyConfig.from_dict({**data, **changes})

    return make


def renamed_subject_copy(bids: Path, subject: str, new_id: str, out: Path) -> Path:
    """A copy of a BIDS dataset in which ``subject`` is called ``new_id`` (folders, file names and
    participants.tsv): the same images under another subject id."""
    import pandas as pd

    shutil.copytree(bids, out)
    (out / subject).rename(out / new_id)
    for path in sorted((out / new_id).rglob(f"{subject}*")):
        path.rename(path.with_name(path.name.replace(subject, new_id)))
    participants = pd.read_csv(out / "participants.tsv", sep="\t")
    participants["participant_id"] = participants["participant_id"].replace(subject, new_id)
    participants.to_csv(out / "participants.tsv", sep="\t", index=False)
    return out
