"""Does each saliency method find the simulated AD effect? Side by side on one study's saved CNNs.

Run: python benchmarks/saliency_localisation.py STUDY_DIR [--methods gradient gradcam occlusion]
     [--condition real]
STUDY_DIR: a finished study on a cohort simulated by medaug (``medaug demo`` gives one), whose
images were registered to the template (``preprocessing.enabled``), so that the simulation's effect
region (ventricles, medial temporal lobes; :func:`medaug.simulation.anatomy.effect_region`) is known
on the study grid. Per method and run it prints the AUC of the AD class-mean map: the probability
that an effect-region voxel outranks a voxel of the rest of the template brain (0.5: not localised),
beside the same AUC for the AD − CN mean image difference, the seconds each method took, and the
AUC of the same networks before training (seeded as the study seeded them): the gradient of an
untrained CNN already favours central, contrasted structures, so that is the baseline to beat.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from medaug.preprocessing.images import resized_affine
from medaug.simulation.anatomy import effect_region
from medaug.study.html_report import template_on_study_grid
from medaug.study.interpret import split_images, mean_image
from medaug.study.saved_classifiers import select_classifiers
from medaug.study.config import load_study
from medaug.study.saliency import METHODS, region_auc, saliency
from medaug.study.search import CNNArchitecture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", type=Path)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--condition", default="real")
    args = parser.parse_args()
    config = load_study(args.study_dir)
    rows, stack = split_images(args.study_dir, "test")
    images = stack[np.arange(len(stack))]
    reference = mean_image(split_images(args.study_dir, "train")[1])
    brain = template_on_study_grid(config.preprocessing, brain_mask=True) > 0.5
    region = effect_region(tuple(images.shape[2:]), resized_affine(rows["path"][:1], config.preprocessing.size))
    inside, outside = region & brain, brain & ~region
    ad = torch.tensor((rows["diagnosis"] == config.data.positive).to_numpy())
    difference = (images[ad].mean(0) - images[~ad].mean(0)).abs()[0].numpy()
    models = select_classifiers(args.study_dir, condition=args.condition, ensemble=True)
    target = models[0].provenance.labels.index(config.data.positive)
    print(f"{args.study_dir}: {args.condition}, {len(models)} run(s), {ad.sum()} {config.data.positive} test "
          f"subjects, {inside.sum()} effect-region and {outside.sum()} other brain voxels")
    print(f"{'|AD − CN| mean image difference':<34} AUC {region_auc(difference, inside, outside):.2f}")
    for method in args.methods:
        start = time.perf_counter()
        aucs = [region_auc(saliency(model.network(), images[ad], target, method, reference).mean(0), inside, outside)
                for model in models]
        seconds = time.perf_counter() - start
        before = [region_auc(saliency(untrained(model), images[ad], target, method, reference).mean(0), inside, outside)
                  for model in models]
        print(f"{method:<10} AUC per run {' '.join(f'{a:.2f}' for a in aucs)} (mean {np.mean(aucs):.2f}, "
              f"{seconds:.0f} s); the same networks before training {' '.join(f'{a:.2f}' for a in before)} "
              f"(mean {np.mean(before):.2f})")


def untrained(model) -> torch.nn.Module:
    """The run's network as the study built it before training (seeded by the run's seed)."""
    config = json.loads((model.folder / "config.json").read_text())
    torch.manual_seed(model.provenance.seed)
    return CNNArchitecture.from_dict(config["architecture"]).build(tuple(config["input_shape"]), config["classes"]).eval()


if __name__ == "__main__":
    main()
