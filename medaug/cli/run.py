"""``medaug run``: a whole augmentation study from its YAML."""

from __future__ import annotations

import argparse
from pathlib import Path



def _run(args: argparse.Namespace) -> None:
    import dataclasses

    from medaug.study.config import load_study_config
    from medaug.study.pipeline import run_study

    config = load_study_config(args.config)
    args.output = config.output  # the folder an OS error without a file name is reported against
    if args.runs is not None:
        config = dataclasses.replace(config, runs=args.runs)  # validated like the file
    result = run_study(config)
    test = result["summary"][result["summary"]["test_set"] == "test"]
    for row in test.itertuples():
        print(f"{row.classifier:>14} {row.condition:<34} balanced accuracy "
              f"{100 * row.balanced_accuracy_mean:5.1f} ± {100 * (row.balanced_accuracy_std or 0):4.1f} "
              f"({row.runs} runs)")
    print(f"report: {Path(config.output) / 'summary.md'}")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("run", help="run an augmentation study from a YAML config (pipelines/*.yaml)",
                                 description="Cohort, split, preprocessing, per-class generators, synthetic images, "
                                             "classifiers over repeated runs and the report; re-running resumes.")
    parser.add_argument("config", type=Path, help="study YAML, for example pipelines/demo.yaml")
    parser.add_argument("--runs", type=int, default=None, help="override the number of runs (may grow on resume)")
    parser.set_defaults(handler=_run)
