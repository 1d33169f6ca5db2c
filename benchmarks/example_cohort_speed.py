"""Speed of the example-cohort simulator.

1. One subject-session at 1 mm on one CPU thread (target: under 5 s), template loading excluded.
2. Serial vs ``jobs=2`` for a small cohort, side by side: the parallel speed-up ratio.

Run: python benchmarks/example_cohort_speed.py
"""

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medaug.simulation.anatomy import load_template_anatomy
from medaug.simulation.example_cohort import ExampleCohortConfig, build_example_cohort, draw_subjects, simulate_subject


def time_one_session(resolution_mm: float, repeats: int = 3) -> float:
    torch.set_num_threads(1)
    load_template_anatomy()
    config = ExampleCohortConfig(subjects_per_label=1, labels=("AD",), resolution_mm=resolution_mm)
    subject = draw_subjects(config)[0]
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            start = time.perf_counter()
            simulate_subject(subject, config, Path(tmp) / str(repeat))
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_cohort(jobs: int) -> float:
    config = ExampleCohortConfig(subjects_per_label=2, resolution_mm=1.0, sessions=("M000", "M012"), seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        build_example_cohort(Path(tmp) / "bids", config, jobs=jobs)
        return time.perf_counter() - start


if __name__ == "__main__":
    for resolution in (1.0, 2.0, 3.0):
        print(f"one subject-session at {resolution:.0f} mm, 1 thread: {time_one_session(resolution):.2f} s "
              "(median of 3, deformation field included)")
    serial, parallel = time_cohort(1), time_cohort(2)
    print(f"4 subjects × 2 sessions at 1 mm: jobs=1 {serial:.1f} s, jobs=2 {parallel:.1f} s, "
          f"speed-up ×{serial / parallel:.2f} (workers share the parent's template volumes)")
