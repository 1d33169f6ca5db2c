from pathlib import Path

import pytest

TUTORIALS = Path(__file__).parents[1] / "tutorials"


def _execute(name: str, work: Path, monkeypatch) -> list[dict]:
    """Run a tutorial at tiny size in ``work``; return its cell outputs (no cell may fail)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MEDAUG_TUTORIAL_TINY", "1")
    monkeypatch.setenv("MEDAUG_TUTORIAL_DIR", str(work))
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(work)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the figures are shown
    return outputs


@pytest.mark.slow
def test_augmentation_study_notebook_runs_at_tiny_size(tmp_path, monkeypatch):
    _execute("augmentation_study.ipynb", tmp_path, monkeypatch)
    assert (tmp_path / "study" / "summary.md").is_file()


@pytest.mark.slow
def test_longitudinal_notebook_runs_at_tiny_size(tmp_path, monkeypatch):
    _execute("longitudinal.ipynb", tmp_path, monkeypatch)
    assert (tmp_path / "synthetic_sequences" / "sub-synthAD0001" / "sub-synthAD0001_sessions.tsv").is_file()
    assert (tmp_path / "imputed_sessions" / "imputed_listing.tsv").is_file()
