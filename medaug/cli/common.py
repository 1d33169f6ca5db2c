"""Argument types, settings-file reading and the command log shared by the sub-commands."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
from collections.abc import Callable
from pathlib import Path

from medaug.errors import ConfigError


def csv_list(value: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, for example CN,AD")
    return items


def size_triple(value: str) -> tuple[int, int, int]:
    from medaug.preprocessing import size_problem

    try:
        size = tuple(int(v) for v in value.split(","))
    except ValueError:
        size = ()
    problem = size_problem(size)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}, for example 84,104,89")
    return size


def _number(text: str, kind: type[int | float]) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def seed(text: str) -> int:
    """A numpy / torch seed: a whole number in [0, 2**32)."""
    value = _number(text, int)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"a seed is a whole number in [0, 2^32), got {value}")
    return value


def count(text: str) -> int:
    """A whole number ≥ 1 (images, draws, a batch size, a first index)."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, got {value}")
    return value


MAX_IMAGES = 100_000  # per call: ten times the thesis's 10 000 synthetic images per class


def image_count(text: str) -> int:
    """A number of images to write: a whole number from 1 to :data:`MAX_IMAGES` (more: call again
    with ``--start-index``), refused before any memory or disk is used."""
    value = count(text)
    if value > MAX_IMAGES:
        raise argparse.ArgumentTypeError(f"at most {MAX_IMAGES} images per call, got {value}; write more in "
                                         "several calls with --start-index")
    return value


def bounded(what: str, low: float, high: float = math.inf, *, above: bool = False,
            unit: str = "") -> Callable[[str], float]:
    """A type for a finite float ≥ ``low`` (> ``low`` with ``above``) and ≤ ``high``."""
    limits = f"{'>' if above else '≥'} {low:g}" + (f" and ≤ {high:g}" if math.isfinite(high) else "") + unit

    def parse(text: str) -> float:
        value = _number(text, float)
        if not (value > low if above else value >= low) or value > high:
            raise argparse.ArgumentTypeError(f"{what} must be {limits}, got {text}")
        return value

    return parse


def config_sections(path: Path | None, sections: tuple[str, ...]) -> dict:
    """The sections of a YAML settings file (safe_load); unknown sections are refused by name."""
    if path is None:
        return {}
    from medaug.io import read_yaml

    options = read_yaml(path, f"give a YAML file with {', '.join(s + ':' for s in sections)} sections") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(s + ':' for s in sections)})")
    unknown = set(options) - set(sections)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}; use {', '.join(s + ':' for s in sections)}")
    return options


def command_log(args: argparse.Namespace, folder: str | os.PathLike | None = None) -> contextlib.AbstractContextManager:
    """The ``medaug.log`` of a command: in ``folder`` or else in the argument its parser names in
    ``log_folder``; none for a command without an output folder."""
    from medaug.logs import folder_log

    if folder is None and "log_folder" in args:
        folder = getattr(args, args.log_folder)
    return folder_log(folder, args.command_line) if folder is not None else contextlib.nullcontext()
