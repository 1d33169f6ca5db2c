"""Every ```python block of README.md runs when pasted into a script (a block preceded by
``<!-- not run: reason -->`` is skipped for that reason)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(?:<!-- not run: (?P<reason>.*?) -->\s*)?^```python\n(?P<code>.*?)^```", re.M | re.S)


def _blocks() -> list:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    params, seen = [], {}
    for match in BLOCK.finditer(text):
        heading = re.findall(r"^## (.+)$", text[:match.start()], re.M)[-1]
        seen[heading] = seen.get(heading, 0) + 1
        marks = [pytest.mark.skip(reason=match["reason"])] if match["reason"] else []
        params.append(pytest.param(match["code"], id=f"{heading} {seen[heading]}", marks=marks))
    return params


def test_readme_has_runnable_python_blocks():
    assert sum(not block.marks for block in _blocks()) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("code", _blocks())
def test_readme_python_block_runs_as_a_script(code, tmp_path):
    (tmp_path / "bids_examples").symlink_to(ROOT / "bids_examples")  # paths in the README are repository-relative
    (tmp_path / "snippet.py").write_text(code, encoding="utf-8")
    result = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
