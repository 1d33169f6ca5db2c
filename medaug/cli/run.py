"""``medaug run``: a whole augmentation study from its YAML."""

from __future__ import annotations

import argparse
from pathlib import Path

from medaug.cli.common import command_log

REPORT_FILES = ("summary.md", "report.html")  # named at the end when the study wrote them


def run_config(args: argparse.Namespace) -> None:
    """Run the study of ``args.config`` (``--runs`` overriding its runs) and print its results;
    also the last step of ``medaug demo``."""
    import dataclasses

    from medaug.study.config import load_study_config
    from medaug.study.pipeline import run_study

    config = load_study_config(args.config)
    args.output = config.output  # the folder an OS error without a file name is reported against
    with command_log(args, config.output):
        if args.runs is not None:
            config = dataclasses.replace(config, runs=args.runs)  # validated like the file
        result = run_study(config)
    test = result["summary"][result["summary"]["test_set"] == "test"]
    for row in test.itertuples():
        print(f"{row.classifier:>14} {row.condition:<34} balanced accuracy "
              f"{100 * row.balanced_accuracy_mean:5.1f} ± {100 * (row.balanced_accuracy_std or 0):4.1f} "
              f"({row.runs} runs)")
    for name in REPORT_FILES:
        if (Path(config.output) / name).exists():
            print(f"report: {Path(config.output) / name}")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("run", help="run an augmentation study from a YAML config (pipelines/*.yaml)",
                                 description="Cohort, split, preprocessing, per-class generators, synthetic images, "
                                             "classifiers over repeated runs and the report; re-running resumes.")
    parser.add_argument("config", type=Path, help="study YAML, for example OUT_DIR/demo.yaml of `medaug demo`")
    parser.add_argument("--runs", type=int, default=None, help="override the number of runs (may grow on resume)")
    parser.set_defaults(handler=run_config)
