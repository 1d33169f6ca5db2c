"""Study inputs that used to give silent wrong results: QC exclusions drawn into the split, a
constant image in a training set (issue: reliability, item 6)."""

import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import medaug.study.data as study_data
from medaug.errors import ConfigError, InputDataError, OutputExistsError
from medaug.study.data import prepare_data
from medaug.study.pipeline import run_study


def test_split_is_drawn_after_qc_exclusions(study_cohort, study_config, tmp_path, monkeypatch):
    excluded = {"sub-SIM0001", "sub-SIM0002", "sub-SIM0003"}  # CN, CN, AD
    original = study_data._preprocessed

    def failing_qc(config, rows, bids, caps):  # as if t1-linear failed or flagged three subjects' images
        kept = original(config, rows, bids, caps)
        return kept[~kept["participant_id"].isin(excluded)]

    cohort = pd.read_csv(next(study_cohort.glob("participants.tsv")), sep="\t")
    assert excluded <= set(cohort["participant_id"])
    monkeypatch.setattr(study_data, "_preprocessed", failing_qc)
    config = study_config(study_cohort, tmp_path / "run", split={"test_per_label": 1, "p_threshold": 0.0})
    data = prepare_data(config, tmp_path / "run")
    split = pd.read_csv(tmp_path / "run/split/split.tsv", sep="\t")
    assert not excluded & set(split["participant_id"]) and len(split) == len(cohort) - 3
    assert data.test.rows["diagnosis"].value_counts().to_dict() == {"AD": 1, "CN": 1}  # the test slots hold
    used = set(data.train.rows["participant_id"]) | set(data.validation.rows["participant_id"])
    assert not excluded & used
    # the recorded split is checked against the usable cohort: restoring an image is not silently ignored
    monkeypatch.setattr(study_data, "_preprocessed", original)
    with pytest.raises(Exception, match=r"usable cohort changed .* 3 subject\(s\) added \(sub-SIM0001, sub-SIM0002, sub-SIM0003"):
        prepare_data(config, tmp_path / "run")


def test_an_all_zero_image_is_refused_by_name(study_cohort, study_config, tmp_path):
    bids = tmp_path / "bids"
    shutil.copytree(study_cohort, bids)
    image_path = sorted(bids.glob("sub-SIM0004/**/*_T1w.nii.gz"))[0]
    image = nib.load(image_path)
    nib.save(nib.Nifti1Image(np.zeros(image.shape, np.float32), image.affine), image_path)
    with pytest.raises(InputDataError, match=rf"{image_path.name}.*constant image \(all voxels 0\)"):
        prepare_data(study_config(bids, tmp_path / "run"), tmp_path / "run")


@pytest.mark.slow
def test_session_less_dataset_is_preprocessed_and_used_end_to_end(study_config, tmp_path):
    """No ses- level: Clinica names without a session entity, and the study finds every image."""
    from medaug.preprocessing.registration import RegistrationConfig
    from medaug.preprocessing.template import load_registration_template, resample_template

    small_template = resample_template(load_registration_template(), 6.0)  # 6 mm: quick registrations

    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "no sessions", "BIDSVersion": "1.10.0"}')
    labels = ["CN", "CN", "CN", "AD", "AD", "AD"]
    pd.DataFrame({"participant_id": [f"sub-{i:02d}" for i in range(6)], "diagnosis": labels,
                  "age": [70.0 + i for i in range(6)], "sex": ["F", "M"] * 3}).to_csv(
        bids / "participants.tsv", sep="\t", index=False)
    rng = np.random.default_rng(0)
    voxels = np.asarray(small_template.voxels, np.float32)
    for i in range(6):
        (bids / f"sub-{i:02d}/anat").mkdir(parents=True)
        noisy = voxels * (1 + 0.05 * rng.standard_normal(voxels.shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(noisy, small_template.affine), bids / f"sub-{i:02d}/anat/sub-{i:02d}_T1w.nii.gz")
    template = tmp_path / "tpl-MNI152NLin2009aAsym_res-6_T1w.nii.gz"
    nib.save(nib.Nifti1Image(small_template.voxels, small_template.affine), template)
    fast = RegistrationConfig(rigid_shrink=(2, 1), rigid_sigmas_mm=(6.0, 3.0), affine_shrink=(1,),
                              affine_sigmas_mm=(0.0,), iterations=50, sampling_fraction=0.3).to_dict()
    config = study_config(bids, tmp_path / "run", preprocessing={
        "enabled": True, "size": [12, 14, 12], "jobs": 2,
        "pipeline": {"template": str(template), "n4_shrink_factor": 1, "registration": fast, "min_ncc": -1.0}})
    data = prepare_data(config, tmp_path / "run")
    caps = tmp_path / "run" / "caps" / "subjects"
    assert not list(caps.rglob("n")) and not list(caps.rglob("*n/a*"))
    crops = sorted(p.relative_to(caps).as_posix() for p in caps.glob("sub-*/t1_linear/*desc-Crop_res-1x1x1_T1w.nii.gz"))
    assert crops == [f"sub-{i:02d}/t1_linear/sub-{i:02d}_space-MNI152NLin2009aAsym_desc-Crop_res-1x1x1_T1w.nii.gz"
                     for i in range(6)]
    used = pd.concat([data.train.rows, data.validation.rows, data.test.rows])
    assert len(used) == 6 and set(used["session_id"]) == {"n/a"}
    assert all("/t1_linear/" in p and "res-12x14x12" in p for p in used["path"])


def test_keep_drops_finished_generator_checkpoints_and_the_study_still_resumes(study_cohort, study_config, tmp_path):
    config = study_config(study_cohort, tmp_path / "s", conditions=["real", "real+synthetic"],
                          samplers=[{"name": "prior"}], classifiers=["sklearn-knn"], runs=1,
                          keep={"generator_checkpoints": False})
    run_study(config)
    generators = tmp_path / "s" / "generators"
    for label in ("CN", "AD"):
        assert (generators / label / "best" / "model.pt").is_file()
        assert not (generators / label / "checkpoint.pt").exists()
    stamp = (generators / "CN" / "best" / "model.pt").stat().st_mtime_ns
    run_study(config)                                   # finished generators are not retrained
    assert (generators / "CN" / "best" / "model.pt").stat().st_mtime_ns == stamp
    kept = study_config(study_cohort, tmp_path / "k", conditions=["real", "real+synthetic"],
                        samplers=[{"name": "prior"}], classifiers=["sklearn-knn"], runs=1)
    run_study(kept)
    assert (tmp_path / "k" / "generators" / "CN" / "checkpoint.pt").is_file()   # default: kept


def test_write_crop_belongs_to_keep_not_to_the_pipeline_options(study_cohort, study_config, tmp_path):
    with pytest.raises(ConfigError, match="keep.crop_images"):
        study_config(study_cohort, tmp_path / "s", preprocessing={"size": [12, 14, 12],
                                                                  "pipeline": {"write_crop": False}})


def test_a_folder_made_before_an_option_existed_resumes_with_its_default(study_cohort, study_config, tmp_path):
    """A config.yaml written by an older medaug lacks the options added since (here keep: and
    split.max_tries); the folder still resumes, and a real change is still refused."""
    import yaml

    config = study_config(study_cohort, tmp_path / "s", conditions=["real"], classifiers=["sklearn-knn"], runs=1)
    run_study(config)
    recorded = tmp_path / "s" / "config.yaml"
    older = yaml.safe_load(recorded.read_text())
    del older["keep"], older["split"]["max_tries"]
    recorded.write_text(yaml.safe_dump(older))
    marker = tmp_path / "s" / "runs" / "sklearn-knn" / "real" / "run-00" / "metrics.tsv"
    stamp = marker.stat().st_mtime_ns
    run_study(config)
    assert marker.stat().st_mtime_ns == stamp
    with pytest.raises(OutputExistsError, match="other split settings"):
        run_study(study_config(study_cohort, tmp_path / "s", conditions=["real"], classifiers=["sklearn-knn"],
                               runs=1, split={"test_per_label": 2, "p_threshold": 0.0}))
