"""The output-folder rule every writing command follows, checked before it opens any file.

:func:`claim_output` refuses, without writing anything (no folder, no lock, no ``medaug.log``):

- an output that is, or lies inside, one of the command's inputs (a dataset, a study, a model
  folder), symlinks followed;
- an existing folder that holds anything but this command's earlier output: a folder is the
  command's own when it holds the command's marker (``.medaug-<command>.json``, written by the
  claim) or, for folders written before markers, when ``own(folder)`` recognises it.

Only then is the folder created, marked, and opened to the command's log (:func:`medaug.logs.allow`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from medaug import __version__
from medaug.errors import ConfigError, OutputExistsError
from medaug.io import write_json
from medaug.logs import LOG_FILE, allow
from medaug.run_folder import LOCK_FILE

MARKER_PREFIX = ".medaug-"
IGNORED = (LOCK_FILE, LOG_FILE)  # a lock left by a killed writer, a log of this command's earlier runs


def marker_name(command: str) -> str:
    """``.medaug-<command>.json``: ``"longitudinal fit"`` → ``.medaug-longitudinal-fit.json``."""
    return f"{MARKER_PREFIX}{command.replace(' ', '-')}.json"


def _writer(folder: Path) -> str | None:
    """The command whose marker ``folder`` holds, if any."""
    for path in sorted(folder.glob(f"{MARKER_PREFIX}*.json")):
        try:
            created_by = json.loads(path.read_text(encoding="utf-8")).get("created_by")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(created_by, str):
            return created_by
    return None


def derivative_named(name: str) -> Callable[[Path], bool]:
    """An ``own`` test: the folder is the BIDS derivative ``name`` (medaug's derivatives before markers)."""

    def own(folder: Path) -> bool:
        try:
            return json.loads((folder / "dataset_description.json").read_text(encoding="utf-8"))["Name"] == name
        except (OSError, ValueError, KeyError, TypeError):
            return False

    return own


def check_output(folder: str | os.PathLike, command: str, *, inputs: Iterable[str | os.PathLike | None] = (),
                 own: Callable[[Path], bool] | None = None, marker: str | None = None) -> Path:
    """Refuse ``folder`` as the output of ``medaug <command>`` (see the module); reads only."""
    folder = Path(folder)
    resolved = folder.resolve()
    for source in filter(None, inputs):
        if resolved.is_relative_to(Path(source).resolve()):
            raise ConfigError(f"output {folder} is inside the input {source}; write it elsewhere (inputs are never "
                              "modified)")
    if resolved.exists() and not resolved.is_dir():
        raise OutputExistsError(f"output {folder} is a file; give a new or empty folder")
    if not resolved.is_dir() or (resolved / (marker or marker_name(command))).is_file():
        return resolved
    entries = sorted(entry.name for entry in resolved.iterdir() if entry.name not in IGNORED)
    if entries and not (own is not None and own(resolved)):
        writer = _writer(resolved)
        what = f"the output of `{writer}`" if writer else f"files that `medaug {command}` did not write"
        raise OutputExistsError(f"{folder} holds {what} ({', '.join(entries[:3])}{' …' if len(entries) > 3 else ''}); "
                                "give a new or empty output folder")
    return resolved


def claim_output(folder: str | os.PathLike, command: str, *, inputs: Iterable[str | os.PathLike | None] = (),
                 own: Callable[[Path], bool] | None = None, marker: str | None = None,
                 record: dict | None = None) -> Path:
    """:func:`check_output`, then create and mark the folder (the marker holds ``record`` too) and
    open it to the command's log."""
    resolved = check_output(folder, command, inputs=inputs, own=own, marker=marker)
    path = resolved / (marker or marker_name(command))
    if not path.is_file():
        write_json(path, {"created_by": f"medaug {command}", "medaug_version": __version__, **(record or {})})
    allow(resolved)
    return resolved
