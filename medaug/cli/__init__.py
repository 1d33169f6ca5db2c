"""The ``medaug`` command: one entry point with sub-commands, thin over the Python API, one module
per sub-command (each with an ``add_parser``).

Bad arguments print a usage message and exit with code 2; domain errors print one line naming
the problem and exit with the error's code; file-system errors (permissions, a full disk, a
read-only file system) print one line naming the path and the fix and exit with code 1; Ctrl-C
exits with code 130. Nothing prints a traceback unless ``--verbose``.

A command that writes an output folder names its argument in ``log_folder`` (``set_defaults``);
its log goes to ``medaug.log`` there (:mod:`medaug.logs`).
"""

from __future__ import annotations

import argparse
import errno
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from medaug import __version__
from medaug.cli import (cohort, demo, example_cohort, generate, interpret, longitudinal, predict, preprocess, run, split,
                        train_generator)
from medaug.cli.common import command_log
from medaug.errors import ConfigError, MedaugError

SUBCOMMANDS = (example_cohort, cohort, split, preprocess, train_generator, generate, run, predict, interpret, demo,
               longitudinal)
OS_ERROR_HINTS = {
    errno.EACCES: "choose a folder you can write to, or fix the permissions",
    errno.EPERM: "choose a folder you can write to, or fix the permissions",
    errno.ENOSPC: "free some space or write to another folder",
    errno.EDQUOT: "free some space (disk quota exceeded) or write to another folder",
    errno.EROFS: "write to another folder",
}


def shown_path(name) -> str:
    """The path an error names, the final name for a temporary file of ``atomic_write``."""
    from medaug.io import ATOMIC_TEMPORARY  # here: `medaug --help` need not import pandas

    path = Path(str(name))
    match = ATOMIC_TEMPORARY.match(path.name)
    return str(path.with_name(match["name"]) if match else path)


def os_error_message(error: OSError, output=None) -> str:
    """One line for a file-system error: the path(s), the reason and, when known, the fix; a full
    disk reported without a file name names the command's ``output``."""
    paths = " → ".join(shown_path(name) for name in (error.filename, error.filename2) if name is not None)
    reason = error.strerror or str(error)
    if not paths and output is not None and error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += f" (writing {output})"
    hint = OS_ERROR_HINTS.get(error.errno)
    return f"{paths + ': ' if paths else ''}{reason}{'; ' + hint if hint else ''}"


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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    console = logging.StreamHandler()  # at INFO even while medaug.log takes medaug's DEBUG records
    console.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", handlers=[console])
    if args.command is None:
        parser.print_help()
        return 2
    subparser = parser._subparsers._group_actions[0].choices[args.command]
    args.command_line = shlex.join(["medaug", *argv])
    try:
        with command_log(args):
            args.handler(args)
    except (MedaugError, OSError, KeyboardInterrupt) as error:
        if args.verbose:
            raise
        if isinstance(error, ConfigError):
            subparser.error(str(error))  # usage + message, exit code 2
        if isinstance(error, KeyboardInterrupt):
            print(f"medaug {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
            return 130
        output = next((getattr(args, key) for key in ("out", "out_dir", "output") if getattr(args, key, None)), None)
        message = os_error_message(error, output) if isinstance(error, OSError) else str(error)
        print(f"medaug {args.command}: error: {message}", file=sys.stderr)
        return getattr(error, "exit_code", 1)
    return 0
