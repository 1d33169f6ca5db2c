"""Shared dataclass ⇄ dict conversion for configuration objects (JSON / YAML round trips)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from medaug.errors import ConfigError

T = TypeVar("T")


def config_to_dict(config: Any) -> dict:
    """Fields as a plain dict, tuples as lists (nested dataclasses become dicts)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def config_from_dict(cls: type[T], data: dict, what: str) -> T:
    """``cls(**data)`` with a clear error naming unknown keys."""
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ConfigError(f"unknown {what} option(s) {sorted(unknown)}")
    return cls(**data)
