import pytest

from medaug.data.example_cohort import ExampleCohortConfig, build_example_cohort

TINY = dict(subjects_per_label=3, resolution_mm=4.0, sessions=("M000", "M012", "M024"), missing_rate=0.3, seed=7)


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory):
    """A tiny longitudinal CN/AD cohort at 4 mm, built once per test session."""
    out = tmp_path_factory.mktemp("cohort") / "bids"
    truth = build_example_cohort(out, ExampleCohortConfig(**TINY))
    return out, truth
