"""Argument types and settings-file reading shared by the sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from medaug.errors import ConfigError


def csv_list(value: str) -> tuple[str, ...]:
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, for example CN,AD")
    return items


def size_triple(value: str) -> tuple[int, int, int]:
    try:
        size = tuple(int(v) for v in value.split(","))
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise argparse.ArgumentTypeError("expected three positive integers, for example 84,104,89")
    return size


def config_sections(path: Path | None, sections: tuple[str, ...]) -> dict:
    """The sections of a YAML settings file (safe_load); unknown sections are refused by name."""
    if path is None:
        return {}
    import yaml

    if not path.is_file():
        raise ConfigError(f"{path} not found; give a YAML file with {', '.join(s + ':' for s in sections)} sections")
    try:
        options = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(options, dict):
        raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(s + ':' for s in sections)})")
    unknown = set(options) - set(sections)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}; use {', '.join(s + ':' for s in sections)}")
    return options
