"""``medaug example-cohort``: simulate a BIDS cohort."""

from __future__ import annotations

import argparse
from pathlib import Path

from medaug.cli.common import bounded, csv_list, seed

def _example_cohort(args: argparse.Namespace) -> None:
    from medaug.simulation.figure import plot_example_subjects
    from medaug.simulation.example_cohort import ExampleCohortConfig, build_example_cohort, summarize_cohort

    config = ExampleCohortConfig(
        subjects_per_label=args.subjects_per_label, labels=args.labels, resolution_mm=args.resolution,
        sessions=args.sessions, missing_rate=args.missing_rate, effect=args.effect, seed=args.seed,
        subject_prefix=args.subject_prefix)
    truth = build_example_cohort(args.out_dir, config, jobs=args.jobs)
    print(f"Simulated BIDS cohort written to {args.out_dir}")
    print(summarize_cohort(truth))
    if args.figure:
        plot_example_subjects(args.out_dir, args.figure)
        print(f"Figure: {args.figure}")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "example-cohort", help="simulate a BIDS cohort (CN/AD) from the MNI152 anatomy shipped with nilearn",
        description="Simulate a longitudinal BIDS T1w cohort with known AD effects (ventricular "
                    "enlargement, medial-temporal atrophy), scanner poses, bias fields and noise.")
    parser.add_argument("out_dir", type=Path, help="output BIDS folder (new, or an earlier run to resume)")
    parser.add_argument("--subjects-per-label", type=int, default=8, metavar="N")
    parser.add_argument("--labels", type=csv_list, default=("CN", "AD"), help="diagnoses, among CN, MCI, AD")
    parser.add_argument("--resolution", type=bounded("resolution", 0.0, above=True, unit=" mm"),
                        default=1.0, metavar="MM", help="voxel size in mm, in [0.5, 10]")
    parser.add_argument("--sessions", type=csv_list, default=("M000",), help="for example M000,M012,M024")
    parser.add_argument("--missing-rate", type=float, default=0.0, metavar="P",
                        help="probability that a follow-up session is missing (never the baseline)")
    parser.add_argument("--effect", type=bounded("effect", 0.0), default=1.0, metavar="SIZE",
                        help="scale of the AD effect (0: none, 1: default, >1: easier to classify)")
    parser.add_argument("--seed", type=seed, default=0, metavar="S", help="in [0, 2^32)")
    parser.add_argument("--subject-prefix", default="SIM", metavar="P",
                        help="participant ids sub-<P>0001…; another prefix simulates other subjects (letters)")
    parser.add_argument("--jobs", type=int, default=1, metavar="J", help="subjects simulated in parallel")
    parser.add_argument("--figure", type=Path, default=None, metavar="PNG",
                        help="also save a PNG of CN and AD subjects, baseline and last visit")
    parser.set_defaults(handler=_example_cohort, log_folder="out_dir")
