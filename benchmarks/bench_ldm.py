"""A latent diffusion model beside the geometry-aware RHVAE and the copy controls, in one study.

``pipelines/ldm_beside_rhvae.yaml`` (or ``--config``): the demo study with one more sampler entry,
``ldm``, with generators of its own (MONAI AutoencoderKL + DiffusionModelUNet, trained per class on
the class's training images). Same cohort, split, quality measures, copy controls and classifier
runs for every pool. Printed and written to ``--out``:

- per pool and class: generator training time (sum of its epochs; an LDM's shared autoencoder in
  ``shared_s``, once for both classes), sampling time for ``--timed`` images (re-drawn after the
  study, same seed), diversity, precision, novel / copy / average fractions (and copies in
  reconstruction space, against the generator's reconstructions of the training images), the median
  distance of a synthetic image to its nearest training image beside that of a real image to its
  nearest other training image, and the same ratio in latent space for the re-drawn codes
  (``latent_nn_ratio``: near 0, the sampler returns the training codes);
- per classifier and condition: balanced accuracy mean ± std over runs and the paired difference
  against real only, with the study's bootstrap 95% CI over runs.

Run: python benchmarks/bench_ldm.py [--config pipelines/ldm_beside_rhvae.yaml] [--runs R]
     [--bids DEMO/bids --study DEMO/study] [--out benchmarks/results_ldm]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

from medaug.generative.persistence import load_generator
from medaug.preprocessing.images import image_tensor
from medaug.provenance import GeneratorProvenance
from medaug.sampling.pool import draw_pool
from medaug.sampling.sampler import posterior_means
from medaug.sampling.samplers import build_sampler
from medaug.sampling.synthetic_dataset import synthetic_listing
from medaug.study.config import StudyConfig, load_study_config
from medaug.study.generation import pool_seed
from medaug.study.pipeline import run_study

def study(args) -> StudyConfig:
    """The study YAML, with ``--runs``, ``--bids`` and ``--study`` over it."""
    config = load_study_config(args.config)
    changes = {"runs": args.runs} if args.runs else {}
    if args.study:
        changes["output"] = str(args.study.resolve())
    data = config.to_dict()
    if args.bids:
        data["data"] = {**data["data"], "bids": str(args.bids.resolve())}
        data["data"].pop("simulate", None)
    return StudyConfig.from_dict({**data, **changes})


def generator_folder(run_dir: Path, config: StudyConfig, pool: str, label: str, code: int) -> Path:
    """The training folder of the generator that drew a pool (its images' sidecars name its ``best/``)."""
    listing = pd.read_csv(synthetic_listing(run_dir / "synthetic" / pool, label, pool_seed(config.seed, pool, code)),
                          sep="\t")
    return Path(json.loads(Path(listing["path"].iloc[0].replace(".nii.gz", ".json")).read_text())["Generator"]).parent


def latent_nn_ratio(latents: torch.Tensor, codes: torch.Tensor) -> float:
    """Median distance of a drawn code to its nearest training code over the median distance of a
    training code to its nearest other one (the training codes are the posterior means): near 0,
    the sampler returns the training codes (memorizes in latent space); nan for a sampler whose
    draws are not codes (``jitter`` perturbs images)."""
    if latents.shape[1:] != codes.shape[1:]:
        return float("nan")
    between = torch.cdist(codes, codes) + torch.diag(torch.full((len(codes),), float("inf")))
    return float(torch.cdist(latents, codes).min(1).values.median() / between.min(1).values.median())


def pool_rows(config: StudyConfig, run_dir: Path, timed: int) -> pd.DataFrame:
    quality = pd.read_csv(run_dir / "quality.tsv", sep="\t")
    rows = []
    for spec in config.samplers:
        for code, label in enumerate(config.data.labels):
            folder = generator_folder(run_dir, config, spec.pool, label, code)
            trained = pd.read_csv(folder / "training_log.csv")["seconds"].sum()
            shared = folder.parent / "shared" / "training_log.csv"  # an LDM's autoencoder, once for all classes
            model = load_generator(folder / "best")
            train = image_tensor(GeneratorProvenance.read(folder / "best").train_images, model.config.input_shape[1:])
            sampler = build_sampler(spec.name, **spec.options).fit(model, train, allow_uninformative=True)
            start = time.perf_counter()
            latents, _ = draw_pool(sampler, timed, seed=pool_seed(config.seed, spec.pool, code), train=train)
            seconds = time.perf_counter() - start
            measured = quality[(quality["sampler"] == spec.pool) & (quality["diagnosis"] == label)].iloc[0]
            rows.append({"pool": spec.pool, "diagnosis": label, "model": model.config.model,
                         "train_s": round(float(trained), 1),
                         "shared_s": round(float(pd.read_csv(shared)["seconds"].sum()), 1) if shared.exists() else 0.0,
                         f"sample_{timed}_s": round(seconds, 2),
                         "latent_nn_ratio": round(latent_nn_ratio(latents.cpu(), posterior_means(model, train)), 3),
                         **{key: round(float(measured[key]), 3) for key in
                            ("diversity", "precision", "novel_fraction", "copy_fraction", "average_fraction",
                             "reconstruction_copy_fraction", "nn_distance_median", "real_nn_distance_median")}})
    return pd.DataFrame(rows)


def accuracy_rows(run_dir: Path) -> pd.DataFrame:
    summary = pd.read_csv(run_dir / "summary.tsv", sep="\t")
    summary = summary[summary["test_set"] == "test"]
    differences = pd.read_csv(run_dir / "differences.tsv", sep="\t")
    differences = differences[differences["test_set"] == "test"].set_index(["classifier", "condition"])
    rows = []
    for row in summary.itertuples():
        key = (row.classifier, row.condition)
        difference = (f"{100 * differences.loc[key, 'balanced_accuracy_difference']:+.1f} "
                      f"[{100 * differences.loc[key, 'ci_low']:+.1f}, {100 * differences.loc[key, 'ci_high']:+.1f}]"
                      if key in differences.index else "reference")
        rows.append({"classifier": row.classifier, "condition": row.condition, "runs": row.runs,
                     "balanced_accuracy": f"{100 * row.balanced_accuracy_mean:.1f} ± {100 * row.balanced_accuracy_std:.1f}",
                     "vs real (points, 95% CI)": difference})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path(__file__).parents[1] / "pipelines" / "ldm_beside_rhvae.yaml")
    parser.add_argument("--bids", type=Path, default=None, help="an existing cohort (default: simulated into OUT/bids)")
    parser.add_argument("--study", type=Path, default=None,
                        help="study folder (default OUT/study); a finished demo's study resumes: only the ldm "
                             "generators, pools and runs are added")
    parser.add_argument("--runs", type=int, default=None, help="override the YAML's runs")
    parser.add_argument("--timed", type=int, default=20, help="images per pool re-drawn to time the sampler")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results_ldm"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = study(args)
    start = time.perf_counter()
    run_study(config)
    elapsed = time.perf_counter() - start
    run_dir = Path(config.output)
    pools, accuracy = pool_rows(config, run_dir, args.timed), accuracy_rows(run_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    pools.to_csv(args.out / "pools.tsv", sep="\t", index=False)
    accuracy.to_csv(args.out / "accuracy.tsv", sep="\t", index=False)
    text = (f"study: {elapsed:.0f} s; size {config.preprocessing.size}; runs {config.runs}\n\n"
            f"{pools.to_string(index=False)}\n\n{accuracy.to_string(index=False)}\n")
    (args.out / "summary.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
