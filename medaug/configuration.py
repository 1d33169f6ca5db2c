"""Typed configuration dataclasses that round-trip through JSON / YAML.

A configuration is a ``@dataclass`` subclass of :class:`Config`. Its annotated field types are
enforced when it is built, from Python or from a mapping: a wrong type, a non-finite number, an
unknown key or a value outside a ``Literal`` raises :class:`~medaug.errors.ConfigError` naming
the key, the expected type and the allowed values. Lists become tuples, whole numbers become
floats where a float is expected and mappings become nested configurations; range checks that
types cannot express go in :meth:`Config.validate`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, ClassVar, Literal, TypeVar, Union

from medaug.errors import ConfigError

C = TypeVar("C", bound="Config")


@cache
def field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of each dataclass field of ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def describe(hint: Any) -> str:
    """Plain-words name of a type annotation, for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return "true or false"
    if hint is int:
        return "a whole number"
    if hint is float:
        return "a finite number"
    if hint is str:
        return "a string"
    if hint is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
        return f"a list of {len(args)} values ({', '.join(describe(a) for a in args)})"
    if origin is dict or hint is dict:
        return "a mapping"
    if isinstance(hint, type) and issubclass(hint, Config):
        return f"a mapping of {hint.section} options"
    return getattr(hint, "__name__", str(hint))


def convert(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the annotation ``hint`` (and converted: lists to tuples, whole
    numbers to floats, mappings to nested configurations); :class:`ConfigError` naming ``key``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)

    def refuse() -> ConfigError:
        return ConfigError(f"{key}: expected {describe(hint)}, got {value!r}")

    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise refuse()
        for option in (a for a in args if a is not type(None)):
            try:
                return convert(value, option, key)
            except ConfigError:
                if isinstance(value, Mapping) and isinstance(option, type) and issubclass(option, Config):
                    raise  # a mapping of that section's options: its own error names the key
                continue
        raise refuse()
    if origin is Literal:
        if value not in args or isinstance(value, bool) != any(isinstance(a, bool) for a in args):
            raise refuse()
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise refuse()
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise refuse()
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise refuse()
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise refuse()
        return value
    if origin is tuple:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
            raise refuse()
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise refuse()
        return tuple(convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise refuse()
        return dict(value)
    if isinstance(hint, type) and issubclass(hint, Config):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return hint.from_dict(value, where=key)
        raise refuse()
    if isinstance(hint, type):
        if not isinstance(value, hint):
            raise refuse()
        return value
    raise TypeError(f"unsupported configuration annotation {hint!r} at {key}")


def plain(value: Any) -> Any:
    """JSON / YAML-ready form: configurations and mappings as dicts, tuples as lists."""
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Config:
    """Base of every configuration dataclass (decorate subclasses with ``@dataclass``).

    ``section`` names the configuration in error messages (``trainer.max_steps: expected ...``).
    """

    section: ClassVar[str] = "configuration"

    def __post_init__(self) -> None:
        for name, hint in field_types(type(self)).items():
            object.__setattr__(self, name, convert(getattr(self, name), hint, _key(self.section, name)))
        self.validate()

    def validate(self) -> None:
        """Checks across fields or of ranges, raising :class:`ConfigError` (types are checked already)."""

    def to_dict(self) -> dict:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(field_types(cls))

    @classmethod
    def from_dict(cls: type[C], data: Mapping | None, where: str | None = None) -> C:
        """Build from a mapping; unknown keys, missing required keys and wrong types are refused by name."""
        where = where or cls.section
        data = {} if data is None else data
        if not isinstance(data, Mapping):
            raise ConfigError(f"{_prefix(where)}expected a mapping of options, got {data!r}")
        hints = field_types(cls)
        unknown = sorted(str(k) for k in data if k not in hints)
        if unknown:
            allowed = ", ".join(hints) or "none"
            raise ConfigError(f"{_prefix(where)}unknown option(s) {', '.join(unknown)}; allowed: {allowed}")
        required = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in data
                    and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if required:
            raise ConfigError(f"{_prefix(where)}missing required option(s) {', '.join(required)}")
        values = {k: convert(v, hints[k], _key(where, k)) for k, v in data.items()}
        try:
            return cls(**values)
        except ConfigError as error:  # name the key where it was given (a nested section)
            prefix, message = f"{cls.section}.", str(error)
            if cls.section and where != cls.section and message.startswith(prefix):
                raise ConfigError(_key(where, message[len(prefix):])) from None
            raise


def _prefix(where: str | None) -> str:
    return f"{where}: " if where else ""


def _key(where: str | None, name: str) -> str:
    return f"{where}.{name}" if where else name


def check_at_least(config: Config, **minimums: float) -> None:
    """Each named field of ``config`` (a number, or every number of a tuple) is ≥ its minimum."""
    for name, low in minimums.items():
        value = getattr(config, name)
        if value is not None and min(value if isinstance(value, tuple) else (value,), default=low) < low:
            raise ConfigError(f"{_key(config.section, name)} must be ≥ {low}, got {plain(value)!r}")


def check_device(value: str, key: str) -> None:
    """A torch device name: ``cpu``, ``cuda`` or ``cuda:i``."""
    head, _, index = value.partition(":")
    if head not in ("cpu", "cuda") or (index and not (head == "cuda" and index.isdigit())):
        raise ConfigError(f"{key}: expected cpu, cuda or cuda:<index>, got {value!r}")


def check_seed(value: int, key: str) -> None:
    """Seeds of numpy and torch generators are whole numbers in [0, 2³²)."""
    if not 0 <= value < 2**32:
        raise ConfigError(f"{key}: a seed is a whole number in [0, 2^32), got {value}")
