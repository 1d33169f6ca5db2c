"""``medaug.log``: the log of each command in its output folder.

While a command runs, :func:`folder_log` appends what the console logs (INFO and up) and medaug's
DEBUG detail to ``<folder>/medaug.log``, with timestamps, logger names and levels, after a header
line naming the command, the medaug version and the time; an error that ends the command is written
with its traceback. The file starts once the command has claimed the folder as its own
(:func:`allow`, called by :func:`medaug.output_folder.claim_output` after its checks): until then
records wait in memory, and a command refused before its claim writes nothing anywhere (its error
reaches the console only). Each record is flushed as it comes, so the log can be followed while a
long command runs. In a BIDS dataset the log is listed in ``.bidsignore``. Under torchrun only
process 0 writes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from medaug import __version__

LOG_FILE = "medaug.log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

logger = logging.getLogger(__name__)
_ALLOWED: set[Path] = set()  # folders claimed by this process's command: their log may be written


def allow(folder: str | os.PathLike) -> None:
    """Let the command's log be written in ``folder``: it is the command's own output folder."""
    _ALLOWED.add(Path(folder).resolve())
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _FolderHandler):
            with handler.lock:
                handler.flush_pending()


class _FolderHandler(logging.Handler):
    """Appends formatted records to ``path`` once its folder exists; until then they wait in memory."""

    def __init__(self, path: Path, header: str):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(FORMAT))
        self.path = path
        self.pending = [header]
        self.file = None
        self.unwritable = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.pending.append(self.format(record))
            self.flush_pending()
        except Exception:
            self.handleError(record)

    def flush_pending(self) -> None:
        """Write the waiting records once the folder is claimed (:func:`allow`)."""
        if self.file is None:
            if self.unwritable or self.path.parent.resolve() not in _ALLOWED or not self.path.parent.is_dir():
                return
            try:
                self.file = open(self.path, "a", encoding="utf-8")
            except OSError:  # the command reports the unwritable folder itself
                self.unwritable = True
                return
        self.file.write("".join(line + "\n" for line in self.pending))
        self.file.flush()
        self.pending.clear()

    def close(self) -> None:
        with self.lock:
            with contextlib.suppress(OSError):
                self.flush_pending()
            if self.file is not None:
                self.file.close()
        super().close()


@contextlib.contextmanager
def folder_log(folder: str | os.PathLike, command: str) -> Iterator[None]:
    """Log the block to ``folder/medaug.log``; ``command`` (the command line) heads the entry."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    folder = Path(folder)
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    handler = _FolderHandler(folder / LOG_FILE, f"===== {command} | medaug {__version__} | {started} =====")
    root, package = logging.getLogger(), logging.getLogger("medaug")
    level = package.level
    root.addHandler(handler)
    package.setLevel(logging.DEBUG)
    logger.debug("python %s on %s, pid %d, working directory %s", platform.python_version(), platform.platform(),
                 os.getpid(), os.getcwd())
    try:
        yield
    except BaseException as error:  # to the file only: the console gets the command's one-line message
        handler.handle(logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "the command ended: %s: %s",
                                         (type(error).__name__, error), sys.exc_info()))
        raise
    finally:
        package.setLevel(level)
        root.removeHandler(handler)
        handler.close()
        if folder.resolve() in _ALLOWED:
            _bids_ignore(folder)


def _bids_ignore(folder: Path) -> None:
    """List the log in the ``.bidsignore`` of a BIDS dataset (the validator refuses unknown files)."""
    ignore = folder / ".bidsignore"
    with contextlib.suppress(OSError):
        if not ((folder / LOG_FILE).is_file() and (folder / "dataset_description.json").is_file()):
            return
        text = ignore.read_text(encoding="utf-8") if ignore.exists() else ""
        if LOG_FILE not in text.splitlines():
            with open(ignore, "a", encoding="utf-8") as file:
                file.write(("\n" if text and not text.endswith("\n") else "") + LOG_FILE + "\n")
