"""``medaug interpret``: saliency maps of a study's saved CNNs on its test subjects."""

from __future__ import annotations

import argparse
from pathlib import Path


def _interpret(args: argparse.Namespace) -> None:
    from medaug.study.interpret import interpret_study
    from medaug.study.saliency import OVERLAY_FILE

    folders = interpret_study(args.study_dir, classifier=args.classifier, conditions=args.condition,
                              method=args.method)
    for condition, folder in folders.items():
        print(f"{condition:<34} {folder / OVERLAY_FILE}")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "interpret", help="saliency maps (gradient, Grad-CAM or occlusion) of a study's CNNs on its test subjects",
        description="Per test subject a saliency NIfTI on the study's grid in template space (mean over the "
                    "condition's runs), the class-mean maps, and a PNG overlay on the template, under "
                    "STUDY_DIR/interpret/<classifier>/<condition>/<method>/. By default real-only and the "
                    "augmented condition with the best validation score; maps of unchanged models are kept.")
    parser.add_argument("study_dir", type=Path, help="output folder of `medaug run`")
    parser.add_argument("--condition", action="append", default=None,
                        help="condition to explain (repeatable; default: real and the best augmented one)")
    parser.add_argument("--classifier", default=None, help="saved classifier (default: the validation's choice)")
    parser.add_argument("--method", choices=("gradient", "gradcam", "occlusion"), default="gradient")  # saliency.METHODS
    parser.set_defaults(handler=_interpret, log_folder="study_dir")
