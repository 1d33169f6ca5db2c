"""Worker pools refuse, with the fix, a script that would start them again in every worker."""

import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from medaug.errors import WorkerStartupError
from medaug.workers import _guarded, _rerun_path, check_main_guarded

ROOT = Path(__file__).resolve().parents[1]
FIX = "Put the call under `if __name__ == '__main__':`"

COHORT = """\
from medaug.simulation.example_cohort import ExampleCohortConfig, build_example_cohort
config = ExampleCohortConfig(subjects_per_label=1, resolution_mm=6.0)
"""
PREPROCESS = """\
import nibabel as nib, numpy as np, pandas as pd
from medaug.preprocessing.runner import preprocess_cohort
nib.save(nib.Nifti1Image(np.random.default_rng(0).random((24, 24, 24), np.float32), np.diag([4.0] * 3 + [1.0])),
         "image.nii.gz")
cohort = pd.DataFrame([{"participant_id": "sub-A", "session_id": "ses-M000", "path": "image.nii.gz"}])
"""


def _run_script(folder: Path, source: str, timeout: float) -> subprocess.CompletedProcess:
    script = folder / "script.py"
    script.write_text(source)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(script)], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("setup, call", [(COHORT, 'build_example_cohort("bids", config, jobs=2)'),
                                         (PREPROCESS, 'preprocess_cohort(cohort, "caps")')],
                         ids=["example-cohort", "preprocess"])
def test_a_script_without_the_main_guard_fails_at_once_with_the_fix(tmp_path, setup, call):
    result = _run_script(tmp_path, setup + call + "\n", timeout=60)

    assert result.returncode != 0
    assert "WorkerStartupError" in result.stderr
    assert f"{tmp_path / 'script.py'} on start; its line {setup.count(chr(10)) + 1}" in result.stderr
    assert FIX in result.stderr


@pytest.mark.slow
def test_a_script_with_the_main_guard_starts_its_workers(tmp_path):
    call = 'print(len(build_example_cohort("bids", config, jobs=2)))'
    result = _run_script(tmp_path, COHORT + 'if __name__ == "__main__":\n    ' + call + "\n", timeout=300)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"


def test_guard_lines_are_found_in_the_source(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""\
        import os
        def main():
            pass
        if "__main__" == __name__:
            main()
        if __name__ == "__main__" and os.name:
            main()
        try:
            if __name__ == "__main__":
                main()
        finally:
            pass
        """))
    assert [line for line in range(1, 14) if _guarded(str(script), line)] == [5, 7, 10]
    assert _guarded(str(tmp_path / "missing.py"), 1)


def test_only_scripts_that_workers_re_run_are_checked():
    assert _rerun_path(types.SimpleNamespace(__spec__=None, __file__="/x/run.py")) == "/x/run.py"
    assert _rerun_path(types.SimpleNamespace(__spec__=types.SimpleNamespace(name="pkg.__main__"),
                                             __file__="/x/pkg/__main__.py")) is None
    assert _rerun_path(types.SimpleNamespace(__spec__=None)) is None  # interactive: nothing is re-run
    check_main_guarded("this test")  # pytest's own entry point is guarded


def test_the_main_scripts_calling_line_decides_before_any_worker_starts(tmp_path, monkeypatch):
    script = tmp_path / "script.py"
    main = types.ModuleType("__main__")
    main.__file__, main.__spec__, main.check_main_guarded = str(script), None, check_main_guarded
    monkeypatch.setitem(sys.modules, "__main__", main)
    script.write_text("check_main_guarded('the pool')\n")
    with pytest.raises(WorkerStartupError, match=rf"re-run {re.escape(str(script))} on start; its line 1 is not"):
        exec(compile(script.read_text(), str(script), "exec"), vars(main))
    script.write_text("if __name__ == '__main__':\n    check_main_guarded('the pool')\n")
    exec(compile(script.read_text(), str(script), "exec"), vars(main))  # guarded: no error
