import json

import numpy as np
import pandas as pd
import pytest

from medaug.simulation.example_cohort import ExampleCohortConfig, build_example_cohort
from medaug.errors import ConfigError, OutputExistsError
from medaug.study.pipeline import run_study


@pytest.fixture(scope="module")
def other_cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("other") / "bids"
    build_example_cohort(out, ExampleCohortConfig(subjects_per_label=2, resolution_mm=6.0, seed=11, effect=3.0))
    return out


@pytest.mark.slow
def test_study_runs_end_to_end_resumes_and_is_reproducible(study_cohort, other_cohort, study_config, tmp_path,
                                                               validator_errors):
    independent = {"bids": str(study_cohort), "labels": ["CN", "AD"], "positive": "AD",
                   "independent_tests": [{"name": "other", "bids": str(other_cohort)}]}
    config = study_config(study_cohort, tmp_path / "a", data=independent)
    result = run_study(config)
    run_dir = tmp_path / "a"
    metrics = result["metrics"]
    # 2 classifiers × (real, 2 synthetic, 2 real+synthetic, classic) × 2 runs
    assert result["tasks"] == 2 * 6 * 2
    test = metrics[metrics["test_set"] == "test"]
    assert len(test) == 24 and test["balanced_accuracy"].between(0, 1).all()
    # the real-only classifier is also scored on each synthetic pool (GAN-test)
    assert set(metrics.loc[metrics["condition"] == "real", "test_set"]) == {"test", "other", "synthetic-prior",
                                                                             "synthetic-rhvae-hmc"}
    # every run is also scored on the independent cohort (its 4 baseline images)
    other = metrics[metrics["test_set"] == "other"]
    assert len(other) == 24 and (other["tp"] + other["tn"] + other["fp"] + other["fn"] == 4).all()
    summary = pd.read_csv(run_dir / "summary.tsv", sep="\t")
    row = summary[(summary["classifier"] == "cnn") & (summary["condition"] == "real") & (summary["test_set"] == "test")]
    runs = test[(test["classifier"] == "cnn") & (test["condition"] == "real")]["balanced_accuracy"]
    assert np.isclose(row["balanced_accuracy_mean"].iloc[0], runs.mean())
    for name in ("config.yaml", "cohort.tsv", "split/split.tsv", "summary.md", "differences.tsv", "gan.tsv",
                 "memorization.tsv", "quality.tsv", "figures/balanced_accuracy.png", "figures/synthetic_vs_real.png",
                 "figures/generator_training.png"):
        assert (run_dir / name).is_file(), name
    log = pd.read_csv(run_dir / "generators" / "AD" / "training_log.csv")  # the training loss selects by default
    assert list(log.columns) == ["epoch", "train_loss", "val_loss", "best_train_loss", "seconds"]
    assert "Generator training" in (run_dir / "report.html").read_text()
    # sample quality and chain diagnostics per sampler and class; the 3-epoch generators are collapsed,
    # which the report says at the top
    quality = pd.read_csv(run_dir / "quality.tsv", sep="\t")
    assert set(quality["sampler"]) == {"prior", "rhvae-hmc"} and len(quality) == 4
    assert quality["coverage"].between(0, 1).all() and quality["diversity"].ge(0).all()
    assert quality.loc[quality["sampler"] == "rhvae-hmc", "acceptance_rate"].between(0, 1).all()
    report = (run_dir / "summary.md").read_text()
    assert report.index("## Sanity checks") < report.index("## Test set") and "uninformative generator" in report
    predictions = pd.read_csv(run_dir / "runs/cnn/real/run-00/predictions.tsv", sep="\t")
    assert {"participant_id", "session_id", "true_label", "predicted_label", "proba_CN", "proba_AD"} <= set(predictions)
    assert np.allclose(predictions[["proba_CN", "proba_AD"]].sum(axis=1), 1, atol=1e-5)
    # synthetic images: labelled in name and sidecar, a valid BIDS derivative, generators never saw test subjects
    images = sorted((run_dir / "synthetic" / "prior").rglob("*_T1w.nii.gz"))
    assert len(images) == 8 and all("desc-synthetic" in p.name and "synth" in p.name for p in images)
    assert json.loads(images[0].with_name(images[0].name.replace(".nii.gz", ".json")).read_text())["Synthetic"] is True
    assert validator_errors(run_dir / "synthetic" / "prior") == []
    split = pd.read_csv(run_dir / "split/split.tsv", sep="\t")
    test_subjects = set(split.loc[split["split"] == "test", "participant_id"])
    for label in ("CN", "AD"):
        seen = json.loads((run_dir / "generators" / label / "best" / "provenance.json").read_text())["train_participants"]
        assert seen and not set(seen) & test_subjects

    # resume: nothing is retrained, results are the same; more runs add only the new ones
    marker = run_dir / "runs/cnn/real/run-00/metrics.tsv"
    stamp = marker.stat().st_mtime_ns
    again = run_study(study_config(study_cohort, tmp_path / "a", data=independent))
    assert marker.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again["metrics"], metrics)
    more = run_study(study_config(study_cohort, tmp_path / "a", data=independent, runs=3,
                                  classifiers=[*config.to_dict()["classifiers"], "sklearn-svm"]))
    assert more["tasks"] == 54 and (run_dir / "runs/cnn/real/run-02/metrics.tsv").exists()
    assert (run_dir / "runs/sklearn-svm/real/run-00/metrics.tsv").exists()
    assert marker.stat().st_mtime_ns == stamp
    with pytest.raises(OutputExistsError, match="other seed settings"):
        run_study(study_config(study_cohort, tmp_path / "a", data=independent, seed=1))

    # the same config and seed in a fresh folder give the same numbers
    fresh = run_study(study_config(study_cohort, tmp_path / "b", data=independent))
    columns = ["classifier", "condition", "run", "test_set", "balanced_accuracy", "auc", "tp", "tn"]
    pd.testing.assert_frame_equal(fresh["metrics"][columns], metrics[columns])


def test_output_inside_the_input_dataset_or_a_non_independent_test_cohort_is_refused(study_cohort, study_config,
                                                                                     tmp_path):
    with pytest.raises(ConfigError, match="is inside the input"):
        run_study(study_config(study_cohort, study_cohort / "derivatives" / "study"))
    same = {"bids": str(study_cohort), "independent_tests": [{"name": "again", "bids": str(study_cohort)}]}
    with pytest.raises(ConfigError, match="is the study's own dataset"):
        run_study(study_config(study_cohort, tmp_path / "c", data=same))


def test_classes_together_draws_all_classes_in_one_batch_as_drawn_alone(study_cohort, study_config, tmp_path,
                                                                        monkeypatch):
    """``classes_together: true``: the study runs both classes' chains in one batch; each class's pool is
    the one drawn alone, up to float rounding (same acceptance, images within float16 rounding). Short
    chains: HMC trajectories amplify rounding exponentially (in float64 too: 1e-16 after 10 warm-up
    transitions, 1e-4 after 40), so long chains drawn together are other, equally valid, draws."""
    from medaug.data.cohort import load_image
    from medaug.sampling.samplers.rhvae_hmc import RHVAEHMCSampler

    batches = []
    draw_together = RHVAEHMCSampler.draw_together
    monkeypatch.setattr(RHVAEHMCSampler, "draw_together", classmethod(
        lambda cls, samplers, n, seeds: batches.append(len(samplers)) or draw_together(samplers, n, seeds=seeds)))
    pools = {}
    for together in (False, True):
        config = study_config(study_cohort, tmp_path / str(together), runs=1, classifiers=["sklearn-knn"],
                              samplers=[{"name": "rhvae-hmc", "options": {"steps": 5, "warmup": 0, "leapfrog_steps": 3,
                                                                          "classes_together": together}}],
                              conditions=["real", {"kind": "real+synthetic", "options": {"per_class": [4]}}])
        run_study(config)
        images = sorted((tmp_path / str(together) / "synthetic" / "rhvae-hmc").rglob("*_T1w.nii.gz"))
        pools[together] = ([load_image(path)[0] for path in images],
                           pd.read_csv(tmp_path / str(together) / "quality.tsv", sep="\t"))
    (alone, alone_quality), (together, together_quality) = pools[False], pools[True]
    assert len(alone) == len(together) == 8
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a, b, atol=2e-3)
    assert alone_quality["acceptance_rate"].tolist() == together_quality["acceptance_rate"].tolist()
    assert not np.allclose(alone[0], alone[4])  # the classes' pools differ
    assert batches == [2]  # one batch of both classes, in the second study only
    # a resumed study draws a lost pool in the same batch of both classes: the same images as the fresh one
    run_dir = tmp_path / "True"
    listing = next((run_dir / "synthetic" / "rhvae-hmc").glob("synthetic_AD_seed*[0-9].tsv"))
    listing.unlink()
    run_study(config)
    assert batches == [2, 2] and listing.exists()
    images = sorted((run_dir / "synthetic" / "rhvae-hmc").rglob("*_T1w.nii.gz"))
    for before, path in zip(together, images):
        np.testing.assert_array_equal(load_image(path)[0], before)
