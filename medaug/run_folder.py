"""What makes an output folder safe to resume: a lock against concurrent writers and a record of
the inputs that define each step's result.

- :class:`FolderLock`: ``<folder>/.medaug.lock`` holds the writer's pid, host, command and start
  time. A second writer is refused with that holder's name; a lock left by a process that no
  longer runs on this host (killed, crashed) is taken over with a warning.
- :class:`StepRecord`: ``<name>.inputs.json`` holds the fingerprint (SHA-256 of canonical JSON) and
  the inputs of one step (options, upstream fingerprints, input file sizes and mtimes). A step is
  reused only while its record matches; a changed input names the changed keys and redoes the
  step, and the downstream steps, whose inputs hold this step's fingerprint, follow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from medaug.errors import OutputExistsError
from medaug.io import ATOMIC_TEMPORARY, write_json

logger = logging.getLogger(__name__)
LOCK_FILE = ".medaug.lock"
_HELD: dict[Path, int] = {}  # locks this process holds → nesting depth (a step may lock a folder it is inside)


def canonical_json(inputs: object) -> str:
    """``inputs`` as canonical JSON text (sorted keys; paths as strings, tuples as lists)."""
    return json.dumps(inputs, sort_keys=True, default=str)


def fingerprint(inputs: object) -> str:
    """SHA-256 (hex) of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()


def file_signature(path: str | os.PathLike) -> list[int]:
    """``[size, mtime_ns]`` of a file: replacing or editing it changes the signature."""
    stat = Path(path).stat()
    return [stat.st_size, stat.st_mtime_ns]


def files_signature(paths: Iterable[str | os.PathLike]) -> str:
    """One fingerprint of many files' paths and signatures (order-independent)."""
    return fingerprint(sorted([str(p), *file_signature(p)] for p in paths))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class FolderLock:
    """Exclusive use of an output folder by one process (a context manager; re-entrant within it)."""

    def __init__(self, folder: str | os.PathLike, command: str) -> None:
        self.folder = Path(folder).resolve()
        self.path = self.folder / LOCK_FILE
        self.command = command

    def __enter__(self) -> FolderLock:
        if self.path in _HELD:
            _HELD[self.path] += 1
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv}
        staged = self.folder / f".medaug.lock.{os.getpid()}"
        staged.write_text(json.dumps(record))
        try:
            for _ in range(2):
                try:
                    os.link(staged, self.path)  # atomic: the lock exists with its whole content, or not at all
                except FileExistsError:
                    self._take_over_if_stale()
                    continue
                _HELD[self.path] = 1
                remove_temporaries(self.folder)
                return self
        finally:
            staged.unlink(missing_ok=True)
        raise OutputExistsError(f"cannot lock {self.folder}: {self.path} keeps reappearing; another process "
                                "is starting in the same folder")

    def _take_over_if_stale(self) -> None:
        try:
            holder = json.loads(self.path.read_text())
            pid, host = int(holder["pid"]), str(holder["host"])
        except FileNotFoundError:
            return  # released meanwhile: try again
        except (ValueError, KeyError, TypeError):
            holder, pid, host = {}, None, None  # half-written or foreign: not provably alive
        if pid is not None and host == socket.gethostname() and not _alive(pid):
            logger.warning("%s: taking over the lock of %s (pid %d), which no longer runs; its unfinished "
                           "step is redone", self.folder, holder.get("command", "a medaug command"), pid)
            self.path.unlink(missing_ok=True)
            return
        who = (f"{holder.get('command', 'a medaug command')} (pid {pid} on {host}, started {holder.get('started')})"
               if pid is not None else f"an unreadable lock {self.path}")
        raise OutputExistsError(f"{self.folder} is in use by {who}; wait for it to finish or use another output "
                                f"folder (if no such process runs, delete {self.path})")

    def __exit__(self, *exc: object) -> None:
        _HELD[self.path] -= 1
        if not _HELD[self.path]:
            del _HELD[self.path]
            self.path.unlink(missing_ok=True)


class StepRecord:
    """The inputs that define one step's outputs, kept in ``path`` (``*.inputs.json``)."""

    def __init__(self, path: str | os.PathLike, inputs: dict) -> None:
        self.path = Path(path)
        self.inputs = json.loads(json.dumps(inputs, default=str))  # as it reads back: tuples → lists
        self.fingerprint = fingerprint(self.inputs)

    def changes(self) -> list[str] | None:
        """None without a record; else the input keys whose values differ from the record (empty: current)."""
        if not self.path.exists():
            return None
        try:
            recorded = json.loads(self.path.read_text())["inputs"]
        except (ValueError, KeyError, TypeError):
            return ["(unreadable record)"]
        return sorted(k for k in set(recorded) | set(self.inputs) if recorded.get(k) != self.inputs.get(k))

    def is_current(self) -> bool:
        return self.changes() == []

    def renew(self, outputs: Iterable[Path], what: str) -> bool:
        """Keep the outputs when the record matches (True); otherwise delete ``outputs`` (files or
        folders this step wrote), then write the new record, and return False: the step is redone."""
        changed = self.changes()
        if changed == []:
            return True
        if changed:
            logger.warning("%s: %s changed since it was made; redoing it and what depends on it",
                           what, ", ".join(changed))
        remove_outputs(outputs)
        write_json(self.path, {"fingerprint": self.fingerprint, "inputs": self.inputs})
        return False


def remove_temporaries(folder: Path) -> None:
    """Delete what :func:`medaug.io.atomic_write` left under ``folder`` when a writer was killed
    (called by the lock holder: no other writer can be using them)."""
    for path in folder.rglob(".*"):
        if ATOMIC_TEMPORARY.match(path.name) and path.is_file():
            logger.info("removing %s, left by an interrupted write", path)
            path.unlink(missing_ok=True)


def replace_unlisted(folders: Iterable[Path], listed: set[Path], listings: str) -> None:
    """Before writing ``folders`` (one per output subject): refuse any that a listing names (a finished
    write; ``listings`` describes where they are), delete those that none names (left by an
    interrupted write), so that a rerun writes them anew."""
    for folder in folders:
        if folder in listed:
            raise OutputExistsError(f"{folder} exists (listed in {listings}); write to another folder or use "
                                    "--start-index")
        if folder.exists():
            shutil.rmtree(folder)


def remove_outputs(outputs: Iterable[Path]) -> None:
    """Delete files and folders a step wrote (an unfinished or outdated result), missing ones skipped."""
    for output in outputs:
        if output.is_dir() and not output.is_symlink():
            shutil.rmtree(output)
        else:
            output.unlink(missing_ok=True)
