"""Refuse to start worker processes from a script whose unguarded top-level code every worker re-runs.

Spawn and forkserver workers re-run the main script on start. A call that starts workers from the
script's top level, outside ``if __name__ == "__main__":``, would make each worker start workers of
its own: they fail while bootstrapping and the parent waits for them forever. :func:`check_main_guarded`
finds that situation before any worker starts, from the calling line of the main script.
"""

from __future__ import annotations

import ast
import inspect
import sys
import tokenize
from pathlib import Path
from types import FrameType, ModuleType

from medaug.errors import WorkerStartupError


def check_main_guarded(what: str) -> None:
    """Raise :class:`WorkerStartupError` when ``what`` (which starts workers) runs from the top level of
    a main script that workers re-run, outside its ``if __name__ == "__main__":`` block."""
    main = sys.modules.get("__main__")
    path = _rerun_path(main)
    frame = _top_level_frame(main) if path else None
    if frame is None or _guarded(path, frame.f_lineno):
        return
    raise WorkerStartupError(
        f"{what} starts worker processes, which re-run {path} on start; its line {frame.f_lineno} is not under "
        "`if __name__ == '__main__':`, so each worker would start workers again and fail, and this process would "
        "wait for them forever. Put the call under `if __name__ == '__main__':`")


def _rerun_path(main: ModuleType | None) -> str | None:
    """The file a spawned worker re-runs as ``__mp_main__`` (the rules of :mod:`multiprocessing.spawn`)."""
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name == "__main__" or (name or "").endswith(".__main__"):
        return None  # a package's __main__.py is not re-run
    path = getattr(main, "__file__", None)
    if path is None or (name is None and Path(path).stem == "ipython"):
        return None
    return path


def _top_level_frame(main: ModuleType) -> FrameType | None:
    """The frame of the main module's top-level code on this thread's stack, if it is there."""
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            return frame
        frame = frame.f_back
    return None


def _guarded(path: str, line: int) -> bool:
    """Whether ``line`` of ``path`` is inside an ``if __name__ == "__main__":`` block (True when unreadable)."""
    try:
        with tokenize.open(path) as file:
            tree = ast.parse(file.read(), path)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return True
    return any(node.body[0].lineno <= line <= node.body[-1].end_lineno
               for node in ast.walk(tree) if isinstance(node, ast.If) and _is_main_test(node.test))


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round), alone or in an ``and``."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return any(_is_main_test(value) for value in test.values)
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = (test.left, test.comparators[0])
    names = [side.id for side in sides if isinstance(side, ast.Name)]
    strings = [side.value for side in sides if isinstance(side, ast.Constant)]
    return names == ["__name__"] and strings == ["__main__"]
