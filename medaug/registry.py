"""Registries: one per component kind (generator model, sampler, classifier, study condition).

A component is a class with a ``name``, an ``Options`` configuration dataclass
(:class:`~medaug.configuration.Config`) and a one-line docstring. It registers itself with the
``@REGISTRY.register`` decorator in its own module; a registry made with a ``package`` imports
every module of that package on first use, so adding a component is adding one module. The
study YAML, the CLI ``choices`` and help and the validation all read the registry.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from medaug.configuration import Config
from medaug.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names → components of one ``kind``; ``package`` is the dotted name of the package whose
    modules define them, or of the one module that does (imported on first lookup)."""

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind, self.package = kind, package
        self._entries: dict[str, T] = {}
        self._discovered = package is None

    def register(self, component: T) -> T:
        """Class decorator: register ``component`` under its ``name``."""
        name = component.name
        if name in self._entries and self._entries[name] is not component:
            raise RuntimeError(f"two {self.kind}s are registered as {name!r}")
        options = getattr(component, "Options", None)
        if not (isinstance(options, type) and issubclass(options, Config)):
            raise TypeError(f"{self.kind} {name!r} needs an Options class derived from medaug.configuration.Config")
        self._entries[name] = component
        return component

    def _discover(self) -> None:
        if not self._discovered:
            self._discovered = True
            package = importlib.import_module(self.package)
            for module in [] if not hasattr(package, "__path__") else sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
                if not module.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{module.name}")

    def names(self) -> tuple[str, ...]:
        self._discover()
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: Any, where: str | None = None) -> T:
        """The component registered as ``name``; :class:`ConfigError` listing the choices otherwise."""
        if not isinstance(name, str) or name not in self.names():
            prefix = f"{where}: " if where else ""
            raise ConfigError(f"{prefix}unknown {self.kind} {name!r}; choose among {', '.join(self.names())}")
        return self._entries[name]

    def options(self, name: str, data: Mapping | None = None, where: str | None = None) -> Config:
        """The validated options of component ``name`` (unknown keys and wrong types refused)."""
        return self.get(name, where).Options.from_dict(data or {}, where=where or f"{name} {self.kind} options")

    def summary(self, name: str) -> str:
        """First line of the component's docstring (for CLI help)."""
        return ((self.get(name).__doc__ or "").strip().splitlines() or [""])[0]

    def help(self) -> str:
        """One line per component: name, options and summary."""
        lines = []
        for name in self.names():
            options = self.get(name).Options.option_names()
            lines.append(f"{name}: {self.summary(name)}" + (f" Options: {', '.join(options)}." if options else ""))
        return "\n".join(lines)


@dataclass
class NoOptions(Config):
    """Options of a component that takes none (any key is refused)."""

    section = "options"
