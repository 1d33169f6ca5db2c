"""``medaug demo``: write the packaged demo study to ``OUT_DIR/demo.yaml`` and run it.

The study simulates its cohort into ``OUT_DIR/bids`` and writes ``OUT_DIR/study``, exactly as
``medaug run OUT_DIR/demo.yaml`` would; rerunning resumes. An ``OUT_DIR/demo.yaml`` that differs
from the packaged one (a researcher's edits) is kept and run as it is, with a notice; a non-empty
``OUT_DIR`` that no demo wrote is refused (:mod:`medaug.output_folder`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medaug.cli.run import run_config


def _demo(args: argparse.Namespace) -> None:
    from medaug.demo import demo_config_text
    from medaug.io import write_text
    from medaug.output_folder import claim_output

    path = args.out_dir / "demo.yaml"
    packaged = demo_config_text()
    claim_output(args.out_dir, "demo", own=lambda folder: (folder / "demo.yaml").is_file())  # demos before markers
    if not path.exists():
        write_text(path, packaged)
        print(f"demo study config written to {path}")
    elif path.read_text(encoding="utf-8") != packaged:
        print(f"{path} differs from the packaged demo config: kept as it is "
              "(delete it to get the packaged one back)")
    if args.config_only:
        print(f"edit it if you like, then run it: medaug run {path}")
        return
    args.config = path
    run_config(args)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo", help="run the demo study (a simulated cohort) into a folder; re-running resumes",
        description="Write the packaged demo study to OUT_DIR/demo.yaml and run it like `medaug run`: a cohort "
                    "simulated into OUT_DIR/bids, the study in OUT_DIR/study. An edited OUT_DIR/demo.yaml is "
                    "kept and run as it is.")
    parser.add_argument("out_dir", type=Path, help="folder of the demo (new, or an earlier demo to resume)")
    parser.add_argument("--config-only", action="store_true", help="write OUT_DIR/demo.yaml and stop")
    parser.add_argument("--runs", type=int, default=None, help="override the number of runs (may grow on resume)")
    parser.set_defaults(handler=_demo)
