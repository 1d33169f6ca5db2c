"""The ``medaug`` command: one entry point with sub-commands, thin over the Python API, one module
per sub-command (each with an ``add_parser``).

Bad arguments print a usage message and exit with code 2; domain errors print one line naming
the problem and exit with the error's code; nothing prints a traceback unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from medaug import __version__
from medaug.cli import cohort, example_cohort, generate, longitudinal, preprocess, run, split, train_generator
from medaug.errors import ConfigError, MedaugError

SUBCOMMANDS = (example_cohort, cohort, split, preprocess, train_generator, generate, run, longitudinal)

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medaug", description="Geometry-aware generative data augmentation for 3D brain MRI.")
    parser.add_argument("--version", action="version", version=f"medaug {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in SUBCOMMANDS:
        command.add_parser(commands)
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
