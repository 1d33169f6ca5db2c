import hashlib
import json
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medaug.simulation.anatomy import TEMPLATE_SPACE, load_template_anatomy
from medaug.simulation.figure import plot_example_subjects
from medaug.simulation.example_cohort import (
    ExampleCohortConfig,
    build_example_cohort,
    draw_subjects,
    read_scanner_to_template,
    summarize_cohort,
    t1w_path,
)
from medaug.simulation.primitives import resample_to_template
from medaug.errors import ConfigError, OutputExistsError

from conftest import TINY


def _digest(folder):
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_bids_layout_and_clinica_columns(tiny_cohort):
    out, truth = tiny_cohort
    participants = pd.read_csv(out / "participants.tsv", sep="\t")
    assert list(participants.columns) == ["participant_id", "sex", "age_bl", "diagnosis_bl", "site"]
    assert sorted(participants["diagnosis_bl"].value_counts().tolist()) == [3, 3]
    assert set(participants["sex"]) <= {"M", "F"}
    assert json.loads((out / "dataset_description.json").read_text())["DatasetType"] == "raw"
    for row in participants.itertuples():
        sessions = pd.read_csv(out / row.participant_id / f"{row.participant_id}_sessions.tsv", sep="\t")
        assert list(sessions.columns) == ["session_id", "age", "diagnosis"]
        assert sessions["session_id"].iloc[0] == "ses-M000"  # the baseline is never missing
        months = sessions["session_id"].str[5:].astype(int)
        np.testing.assert_allclose(sessions["age"], row.age_bl + months / 12, atol=0.01)
        for session in sessions["session_id"]:
            assert t1w_path(out, row.participant_id, session).exists()
            assert (out / row.participant_id / session / "anat" / f"{row.participant_id}_{session}_T1w.json").exists()
    assert len(truth) == sum(1 for _ in out.glob("sub-*/ses-*/anat/*_T1w.nii.gz"))
    gt = json.loads((out / "derivatives" / "ground_truth" / "dataset_description.json").read_text())
    assert gt["DatasetType"] == "derivative" and gt["GeneratedBy"][0]["Name"] == "medaug"


def test_images_are_in_scanner_space_with_varied_orientations(tiny_cohort):
    out, _ = tiny_cohort
    codes = {"".join(nib.aff2axcodes(nib.load(p).affine)) for p in out.glob("sub-*/ses-*/anat/*_T1w.nii.gz")}
    assert len(codes) > 1 and codes != {"RAS"}
    image = nib.load(next(out.glob("sub-*/ses-*/anat/*_T1w.nii.gz")))
    assert image.get_data_dtype() == np.int16
    assert image.header["sform_code"] == 1 and image.header["qform_code"] == 1


def test_recorded_transform_maps_the_image_back_onto_the_template(tiny_cohort):
    out, truth = tiny_cohort
    anatomy = load_template_anatomy()
    step = 3
    affine = anatomy.affine.copy()
    affine[:3, :3] *= step
    template = anatomy.head[::step, ::step, ::step]
    brain = anatomy.brain_mask[::step, ::step, ::step]
    for row in truth.head(4).itertuples():
        image = nib.load(t1w_path(out, row.participant_id, row.session_id))
        transform = read_scanner_to_template(out, row.participant_id, row.session_id)
        good = resample_to_template(image, transform, template.shape, affine)
        wrong = resample_to_template(image, np.eye(4), template.shape, affine)
        r_good = np.corrcoef(good[brain], template[brain])[0, 1]
        r_wrong = np.corrcoef(wrong[brain], template[brain])[0, 1]
        # 4 mm voxels, bias field, noise and a 3 mm deformation keep r below 1
        assert r_good > 0.65, (row.participant_id, r_good)
        assert r_good > r_wrong + 0.3


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    config = ExampleCohortConfig(subjects_per_label=1, resolution_mm=6.0, sessions=("M000", "M012"), seed=3)
    build_example_cohort(tmp_path / "a", config)
    build_example_cohort(tmp_path / "b", config)
    build_example_cohort(tmp_path / "c", ExampleCohortConfig(**{**config.to_dict(), "seed": 4}))
    a, b, c = (_digest(tmp_path / name) for name in "abc")
    assert a == b
    image = next(k for k in a if k.endswith("T1w.nii.gz"))
    assert a[image] != c.get(image)


@pytest.mark.slow
def test_parallel_jobs_give_identical_files(tmp_path):
    config = ExampleCohortConfig(subjects_per_label=2, resolution_mm=6.0, seed=5)
    build_example_cohort(tmp_path / "serial", config, jobs=1)
    build_example_cohort(tmp_path / "parallel", config, jobs=2)
    assert _digest(tmp_path / "serial") == _digest(tmp_path / "parallel")


def test_ad_ventricle_excess_has_the_right_sign_and_grows_with_effect(tmp_path):
    differences = []
    for effect in (0.0, 1.0, 3.0):
        config = ExampleCohortConfig(subjects_per_label=4, resolution_mm=4.0, effect=effect, seed=11)
        truth = build_example_cohort(tmp_path / f"effect{effect}", config)
        means = truth.groupby("diagnosis")[["ventricle_volume_ml", "mtl_grey_matter_ml"]].mean()
        differences.append(means.loc["AD"] - means.loc["CN"])
    ventricles = [d["ventricle_volume_ml"] for d in differences]
    grey = [d["mtl_grey_matter_ml"] for d in differences]
    assert ventricles[1] > 0 and grey[1] < 0
    assert ventricles[0] < ventricles[1] < ventricles[2]
    assert grey[0] > grey[1] > grey[2]


def test_follow_up_atrophy_progresses_faster_in_ad(tiny_cohort):
    _, truth = tiny_cohort
    ordered = truth.sort_values(["participant_id", "age"])
    first, last = ordered.groupby("participant_id").head(1), ordered.groupby("participant_id").tail(1)
    followed = last.set_index("participant_id").index.intersection(
        last[last["session_id"] != "ses-M000"]["participant_id"])
    growth = (last.set_index("participant_id").loc[followed, "ventricle_expansion"]
              - first.set_index("participant_id").loc[followed, "ventricle_expansion"])
    assert (growth > 0).all()
    diagnosis = first.set_index("participant_id").loc[followed, "diagnosis"]
    if {"AD", "CN"} <= set(diagnosis):
        assert growth[diagnosis == "AD"].mean() > growth[diagnosis == "CN"].mean()


def test_subjects_are_drawn_like_adni():
    config = ExampleCohortConfig(subjects_per_label=300, labels=("CN", "AD"), seed=0)
    subjects = draw_subjects(config)
    ages = {label: np.array([s.age_bl for s in subjects if s.diagnosis == label]) for label in ("CN", "AD")}
    assert abs(ages["CN"].mean() - 73) < 1.0 and abs(ages["CN"].std() - 6) < 1.0
    assert abs(ages["AD"].mean() - 75) < 1.5 and abs(ages["AD"].std() - 8) < 1.5
    scale = {sex: np.mean([s.head_scale for s in subjects if s.sex == sex]) for sex in "MF"}
    assert scale["M"] > scale["F"]
    assert all(s.severity_bl == 0 for s in subjects if s.diagnosis == "CN")
    assert len({s.participant_id for s in subjects}) == 600


def test_resume_keeps_finished_subjects_and_refuses_foreign_folders(tmp_path):
    config = ExampleCohortConfig(subjects_per_label=1, resolution_mm=6.0, seed=2)
    out = tmp_path / "bids"
    build_example_cohort(out, config)
    complete = _digest(out)
    kept, redone = sorted(p.name for p in out.glob("derivatives/ground_truth/sub-*"))
    kept_image = next(out.glob(f"{kept}/ses-*/anat/*_T1w.nii.gz"))
    kept_mtime = kept_image.stat().st_mtime_ns
    shutil.rmtree(out / "derivatives" / "ground_truth" / redone)  # this subject is now unfinished
    build_example_cohort(out, config)  # resumes
    assert _digest(out) == complete  # the unfinished subject is rebuilt identically
    assert kept_image.stat().st_mtime_ns == kept_mtime  # the finished one is not rewritten
    with pytest.raises(OutputExistsError, match="other parameters"):
        build_example_cohort(out, ExampleCohortConfig(subjects_per_label=2, resolution_mm=6.0, seed=2))
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="holds files that `medaug example-cohort` did not write"):
        build_example_cohort(foreign, config)
    assert (foreign / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("bad", [
    {"subjects_per_label": 0}, {"subjects_per_label": -2}, {"labels": ("CN", "XX")}, {"labels": ()},
    {"resolution_mm": 0.0}, {"resolution_mm": -1.0}, {"sessions": ("M000", "12")},
    {"missing_rate": -0.1}, {"effect": -1.0},
])
def test_bad_parameters_raise_config_errors(bad):
    with pytest.raises(ConfigError):
        ExampleCohortConfig(**bad)


def test_config_round_trips_through_json():
    config = ExampleCohortConfig(**TINY)
    again = ExampleCohortConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    with pytest.raises(ConfigError, match="unknown"):
        ExampleCohortConfig.from_dict({"subject_per_label": 3})


def test_summary_and_figure(tiny_cohort, tmp_path):
    out, truth = tiny_cohort
    summary = summarize_cohort(truth)
    assert "CN" in summary and "AD" in summary and "±" in summary
    png = plot_example_subjects(out, tmp_path / "fig.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ground_truth_names_the_template_space(tiny_cohort):
    out, _ = tiny_cohort
    assert list(out.glob(f"derivatives/ground_truth/sub-*/ses-*/anat/*to-{TEMPLATE_SPACE}_mode-image_xfm.txt"))
