"""The ``medaug`` command: one entry point with sub-commands, thin over the Python API.

Bad arguments print a usage message and exit with code 2; domain errors print one line naming
the problem and exit with the error's code; nothing prints a traceback unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from medaug import __version__
from medaug.errors import ConfigError, MedaugError

logger = logging.getLogger("medaug")


def _csv(value: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, for example CN,AD")
    return items


def _example_cohort(args: argparse.Namespace) -> None:
    from medaug.data.cohort_figure import plot_example_subjects
    from medaug.data.example_cohort import ExampleCohortConfig, build_example_cohort, summarize_cohort

    config = ExampleCohortConfig(
        subjects_per_label=args.subjects_per_label, labels=args.labels, resolution_mm=args.resolution,
        sessions=args.sessions, missing_rate=args.missing_rate, effect=args.effect, seed=args.seed)
    truth = build_example_cohort(args.out_dir, config, jobs=args.jobs)
    print(f"Simulated BIDS cohort written to {args.out_dir}")
    print(summarize_cohort(truth))
    if args.figure:
        plot_example_subjects(args.out_dir, args.figure)
        print(f"Figure: {args.figure}")


def _add_example_cohort(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "example-cohort", help="simulate a BIDS cohort (CN/AD) from the MNI152 anatomy shipped with nilearn",
        description="Simulate a longitudinal BIDS T1w cohort with known AD effects (ventricular "
                    "enlargement, medial-temporal atrophy), scanner poses, bias fields and noise.")
    parser.add_argument("out_dir", type=Path, help="output BIDS folder (new, or an earlier run to resume)")
    parser.add_argument("--subjects-per-label", type=int, default=8, metavar="N")
    parser.add_argument("--labels", type=_csv, default=("CN", "AD"), help="diagnoses, among CN, MCI, AD")
    parser.add_argument("--resolution", type=float, default=1.0, metavar="MM", help="voxel size in mm")
    parser.add_argument("--sessions", type=_csv, default=("M000",), help="for example M000,M012,M024")
    parser.add_argument("--missing-rate", type=float, default=0.0, metavar="P",
                        help="probability that a follow-up session is missing (never the baseline)")
    parser.add_argument("--effect", type=float, default=1.0, metavar="SIZE",
                        help="scale of the AD effect (0: none, 1: default, >1: easier to classify)")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--jobs", type=int, default=1, metavar="J", help="subjects simulated in parallel")
    parser.add_argument("--figure", type=Path, default=None, metavar="PNG",
                        help="also save a PNG of CN and AD subjects, baseline and last visit")
    parser.set_defaults(handler=_example_cohort)


SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_example_cohort,)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medaug", description="Geometry-aware generative data augmentation for 3D brain MRI.")
    parser.add_argument("--version", action="version", version=f"medaug {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    subparser = parser._subparsers._group_actions[0].choices[args.command]
    try:
        args.handler(args)
    except ConfigError as error:
        if args.verbose:
            raise
        subparser.error(str(error))  # usage + message, exit code 2
    except MedaugError as error:
        if args.verbose:
            raise
        print(f"medaug {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    return 0
