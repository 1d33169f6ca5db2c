"""``data.simulate``: a study's cohort simulated where it is missing, resumed, checked, never mixed up."""

import pytest

from medaug.errors import ConfigError, InputDataError, OutputExistsError
from medaug.simulation.example_cohort import CONFIG_FILE, GROUND_TRUTH_DIR
from medaug.study.config import DataSection, SimulatedCohort
from medaug.study.simulated import ensure_simulated_cohort

TINY = {"subjects_per_label": 1, "resolution_mm": 10.0, "seed": 3}


@pytest.mark.parametrize("simulate, message", [
    ({"resolution_mm": 0.1}, r"data.simulate: resolution must be in \[0.5, 10\] mm"),
    ({"labels": ["CN", "XX"]}, "data.simulate: unknown diagnosis label"),
    ({"jobs": 0}, "data.simulate.jobs must be ≥ 1"),
    ({"seed": -1}, "data.simulate.seed: a seed is a whole number"),
    ({"sessions": ["M012", "M000"]}, "data.simulate: sessions must be distinct and in increasing order"),
    ({"subjects_per_label": 1.5}, "data.simulate.subjects_per_label: expected a whole number"),
    ({"deformation_rms_mm": 1, "colour": 1}, "data.simulate: unknown option.s. colour"),
    ({"labels": ["CN", "MCI"]}, r"data.labels \['CN', 'AD'\] are not all in data.simulate.labels"),
])
def test_simulate_settings_are_validated_up_front(simulate, message):
    with pytest.raises(ConfigError, match=message):
        DataSection.from_dict({"bids": "bids", "simulate": simulate})


def test_data_section_round_trips_and_records_no_simulate_key_without_one():
    data = DataSection.from_dict({"bids": "bids", "simulate": {**TINY, "jobs": 2}})
    assert DataSection.from_dict(data.to_dict()) == data and data.simulate.cohort_config().resolution_mm == 10.0
    assert "simulate" not in DataSection("bids").to_dict()  # config.yaml of earlier studies still matches


def test_cohort_is_built_then_reused_untouched_and_other_settings_are_refused(tmp_path):
    bids, run_dir = tmp_path / "bids", tmp_path / "study"
    settings = SimulatedCohort(**TINY)
    ensure_simulated_cohort(str(bids), settings, run_dir)
    images = sorted(bids.glob("sub-*/ses-*/anat/*_T1w.nii.gz"))
    assert len(images) == 2
    stamps = {path: path.stat().st_mtime_ns for path in bids.rglob("*") if path.is_file()}
    ensure_simulated_cohort(str(bids), settings, run_dir)  # complete: nothing is rewritten
    assert {path: path.stat().st_mtime_ns for path in bids.rglob("*") if path.is_file()} == stamps

    with pytest.raises(OutputExistsError, match="other data.simulate settings .effect, seed differ"):
        ensure_simulated_cohort(str(bids), SimulatedCohort(**{**TINY, "seed": 4, "effect": 2.0}), run_dir)

    images[0].unlink()
    with pytest.raises(InputDataError, match="lacks 1 of its images"):
        ensure_simulated_cohort(str(bids), settings, run_dir)


def test_an_unfinished_cohort_is_resumed(tmp_path):
    bids = tmp_path / "bids"
    settings = SimulatedCohort(**TINY)
    ensure_simulated_cohort(str(bids), settings, tmp_path / "study")
    kept = next(bids.glob("sub-*/ses-*/anat/*_T1w.nii.gz"))
    stamp = kept.stat().st_mtime_ns
    (bids / GROUND_TRUTH_DIR / "ground_truth.json").unlink()  # as if interrupted before the last file
    ensure_simulated_cohort(str(bids), settings, tmp_path / "study")
    assert (bids / GROUND_TRUTH_DIR / "ground_truth.json").is_file() and kept.stat().st_mtime_ns == stamp


def test_a_foreign_folder_or_one_inside_the_output_is_refused(tmp_path):
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="is not empty and is not a simulated cohort"):
        ensure_simulated_cohort(str(foreign), SimulatedCohort(**TINY), tmp_path / "study")
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    with pytest.raises(ConfigError, match="is inside the output folder"):
        ensure_simulated_cohort(str(tmp_path / "study" / "bids"), SimulatedCohort(**TINY), tmp_path / "study")
    assert not (tmp_path / "study").exists() and not (foreign / CONFIG_FILE).exists()
