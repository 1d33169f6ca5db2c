"""Peak RAM of a whole ``medaug run`` on a large cohort at 84×104×89 (issue #10: 1000 subjects
within 16 GB), measured on the process tree while the study runs.

The cohort is a BIDS dataset of ``--subjects`` baseline T1w images already in template space
(smooth random fields with a class-dependent dark ellipsoid, see ``scale_tools.py``), read with
``preprocessing.enabled: false``. The study runs every stage (cohort, split, image stacks, one
generator per class, geometry-aware sampling, real and real+synthetic CNN and k-NN tasks, GAN-test,
memorization audit, report) with small networks and one epoch, since only memory is measured.
Prints the peak resident memory of ``medaug run`` and its children, and the wall time.

Run: python benchmarks/bench_study_memory.py --subjects 1000 --out /path/with/30GB/free
"""

import argparse
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import psutil
import yaml

from scale_tools import volumes

SIZE = (84, 104, 89)


def write_cohort(root: Path, subjects: int) -> None:
    """Baseline images, half CN and half AD, with Clinica-style participants.tsv."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "medaug memory benchmark", "BIDSVersion": "1.10.0"}')
    rng = np.random.default_rng(0)
    rows = []
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for label, diagnosis in enumerate(("CN", "AD")):
        count = subjects // 2
        for index, image in enumerate(image for batch in volumes(count, label, SIZE, seed=label) for image in batch):
            participant = f"sub-{diagnosis}{index:04d}"
            folder = root / participant / "ses-M000" / "anat"
            folder.mkdir(parents=True)
            nib.save(nib.Nifti1Image(image[0].numpy(), affine), folder / f"{participant}_ses-M000_T1w.nii.gz")
            rows.append({"participant_id": participant, "sex": rng.choice(["F", "M"]),
                         "age_bl": round(float(rng.uniform(60, 85)), 1), "diagnosis_bl": diagnosis, "site": "S01"})
    pd.DataFrame(rows).to_csv(root / "participants.tsv", sep="\t", index=False)


def study(bids: Path, output: Path, synthetic: int) -> dict:
    return {"name": "memory", "output": str(output), "seed": 0, "runs": 1,
            "data": {"bids": str(bids), "labels": ["CN", "AD"], "positive": "AD"},
            "preprocessing": {"enabled": False, "size": list(SIZE)},
            "split": {"test_per_label": 100, "validation_fraction": 0.2, "seed": 0},
            "generator": {"model": "rhvae", "network": "mlp", "latent_dim": 4, "hidden": [32], "options": {"metric_hidden": 16}},
            "trainer": {"max_steps": 1, "batch_size": 25, "learning_rate": 0.0001},
            "samplers": [{"name": "rhvae-hmc", "options": {"steps": 20, "leapfrog_steps": 3, "step_size": 0.01}}],
            "synthetic_per_class": [synthetic], "conditions": ["real", "real+synthetic"],
            "classifiers": ["cnn", "sklearn-knn"],
            "classifier_training": {"epochs": 1, "batch_size": 8, "learning_rate": 0.0001},
            "executor": {"kind": "sequential", "cpus_per_task": 2}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--synthetic", type=int, default=500, help="synthetic images per class")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    bids = args.out / "bids"
    if not bids.exists():
        start = time.perf_counter()
        write_cohort(bids, args.subjects)
        print(f"cohort of {args.subjects} images written in {time.perf_counter() - start:.0f} s", flush=True)
    config = args.out / "study.yaml"
    config.write_text(yaml.safe_dump(study(bids, args.out / "run", args.synthetic), sort_keys=False))
    start = time.perf_counter()
    process = psutil.Popen([sys.executable, "-m", "medaug", "run", str(config)])
    peak = 0.0
    while process.poll() is None:
        total = 0
        for member in [process, *process.children(recursive=True)]:
            try:
                total += member.memory_info().rss
            except psutil.Error:
                pass
        peak = max(peak, total / 1024 ** 3)
        time.sleep(0.5)
    print(f"medaug run exited with {process.returncode} after {time.perf_counter() - start:.0f} s; "
          f"peak resident memory of the process tree {peak:.2f} GB ({args.subjects} subjects at "
          f"{'x'.join(map(str, SIZE))}, {args.synthetic} synthetic images per class)", flush=True)


if __name__ == "__main__":
    main()
