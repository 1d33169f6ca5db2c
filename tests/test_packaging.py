"""The demo ships in the wheel: ``medaug demo`` works from a fresh install, outside the repository."""

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from medaug.cli import main
from medaug.demo import demo_config_text
from medaug.study.config import load_study_config

ROOT = Path(__file__).parents[1]
DEMO = "medaug/demo/demo.yaml"
TINY_STUDY = {  # the packaged demo cut down to seconds: every step of the study, once
    "preprocessing": {"enabled": False, "size": [12, 14, 12]},
    "split": {"test_per_label": 1, "p_threshold": 0.0},
    "generator": {"model": "rhvae", "latent_dim": 2, "hidden": [16], "options": {"metric_hidden": 8}},
    "trainer": {"max_steps": 1, "batch_size": 4},
    "samplers": [{"name": "prior"}],
    "allow_uninformative_generators": True,  # one optimiser step: a collapsed generator, sampled anyway
    "synthetic_per_class": [2],
    "conditions": ["real", "real+synthetic"],
    "classifiers": ["sklearn-svm"],  # calibrated on 3 folds: 3 training images per class, so 5 subjects
    "runs": 1,
    "executor": {"cpus_per_task": 1},
}


def test_packaged_demo_config_is_valid_and_writes_beside_itself(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(demo_config_text())
    config = load_study_config(path)
    assert config.data.bids == str(tmp_path / "bids") and config.output == str(tmp_path / "study")
    assert config.data.simulate is not None and set(config.data.labels) <= set(config.data.simulate.labels)


def test_demo_config_only_writes_the_packaged_file_and_keeps_an_edited_one(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", str(out), "--config-only"]) == 0
    assert (out / "demo.yaml").read_text() == demo_config_text() and sorted(os.listdir(out)) == [".medaug-demo.json", "demo.yaml"]
    edited = demo_config_text().replace("runs: 5", "runs: 2")
    (out / "demo.yaml").write_text(edited)
    capsys.readouterr()
    assert main(["demo", str(out), "--config-only"]) == 0
    assert "differs from the packaged demo config: kept as it is" in capsys.readouterr().out
    assert (out / "demo.yaml").read_text() == edited

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "summary.md").write_text("an older quickstart's study")
    assert main(["demo", str(tmp_path / "old"), "--config-only"]) == 2
    assert "did not write (summary.md)" in capsys.readouterr().err and not (tmp_path / "old" / "demo.yaml").exists()


def _copy_project(dest: Path) -> Path:
    """What the wheel is built from, copied: the build leaves no build/ or egg-info in the checkout."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "medaug", dest / "medaug", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.mark.slow
def test_demo_runs_from_the_wheel_in_a_fresh_venv(tmp_path):
    source = _copy_project(tmp_path / "source")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp_path / "wheels"), "-q"], check=True)
    (wheel,) = (tmp_path / "wheels").glob("medaug-*.whl")
    assert DEMO in zipfile.ZipFile(wheel).namelist()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, medaug = venv / "bin" / "python", venv / "bin" / "medaug"
    packages = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
    # this environment's dependencies, offline; a path listed in a .pth file is no site folder, so the
    # .pth files there (an editable medaug's finder) do not run, and the new venv's own site-packages comes first
    Path(packages, "_current_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([python, "-m", "pip", "--disable-pip-version-check", "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True)

    work = tmp_path / "work"  # outside the repository: nothing of the checkout is importable
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    run = lambda *args: subprocess.run([*map(str, args)], cwd=work, env=env, capture_output=True, text=True)  # noqa: E731
    located = run(python, "-c", "import medaug; print(medaug.__file__)")
    assert located.returncode == 0, located.stderr
    assert Path(located.stdout.strip()).is_relative_to(venv), located.stdout

    written = run(medaug, "demo", "demo", "--config-only")
    assert written.returncode == 0, written.stderr
    path = work / "demo" / "demo.yaml"
    assert path.read_text() == (ROOT / DEMO).read_text()
    config = yaml.safe_load(path.read_text())
    config["data"]["simulate"].update(subjects_per_label=5, resolution_mm=8.0)  # jobs: 2, as packaged
    path.write_text(yaml.safe_dump({**config, **TINY_STUDY}, sort_keys=False))

    study = run(medaug, "run", path)
    assert study.returncode == 0, study.stderr[-3000:]
    assert (work / "demo" / "study" / "summary.md").is_file()
    assert (work / "demo" / "bids" / "dataset_description.json").is_file()
    assert f"report: {work / 'demo' / 'study' / 'summary.md'}" in study.stdout

    again = run(medaug, "demo", "demo")  # the edited file is kept and its finished study resumes
    assert again.returncode == 0, again.stderr[-3000:]
    assert "kept as it is" in again.stdout and "sklearn-svm" in again.stdout
