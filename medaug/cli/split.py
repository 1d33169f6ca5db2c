"""``medaug split``: subject-level, stratified, balanced splits."""

from __future__ import annotations

import argparse
from pathlib import Path

from medaug.cli.common import seed


def _split(args: argparse.Namespace) -> None:
    from medaug.data.splits import SplitConfig, balance_report, read_cohort, save_split, split_subjects
    from medaug.output_folder import check_output, claim_output

    output = {"inputs": [args.cohort], "own": lambda folder: (folder / "split.json").is_file()}  # before markers
    check_output(args.output, "split", **output)
    config = SplitConfig(test_per_label=args.test_per_label, train_n=args.train_n, seed=args.seed,
                         p_threshold=args.p_threshold, max_tries=args.max_tries)
    subjects = split_subjects(read_cohort(args.cohort), config)
    claim_output(args.output, "split", **output)
    save_split(subjects, config, args.output)
    print(balance_report(subjects).to_string(index=False))
    print(f"split written to {args.output}")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("split", help="subject-level, stratified, demographically balanced splits")
    parser.add_argument("cohort", type=Path, help="cohort TSV from `medaug cohort`")
    parser.add_argument("-o", "--output", type=Path, required=True, help="split folder to write")
    parser.add_argument("--test-per-label", type=int, required=True, metavar="N")
    parser.add_argument("--train-n", type=int, default=None, metavar="N", help="train-N subset, N per label")
    parser.add_argument("--seed", type=seed, default=0, help="in [0, 2^32)")
    parser.add_argument("--p-threshold", type=float, default=0.8, help="minimum p of the age and sex tests")
    parser.add_argument("--max-tries", type=int, default=1000)
    parser.set_defaults(handler=_split, log_folder="output")
