import os
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from medaug.errors import ConfigError, StudyTaskError
from medaug.study import executors
from medaug.study.pipeline import run_study


def _results(folder):
    """The bytes of the report tables and of every task's files."""
    paths = [*folder.glob("*.tsv"), *(folder / "runs").rglob("*.tsv")]
    return {p.relative_to(folder): p.read_bytes() for p in sorted(paths)}


def test_a_failed_task_is_listed_and_rerunning_completes_the_study(study_cohort, study_config, tmp_path, monkeypatch):
    config = study_config(study_cohort, tmp_path / "s", conditions=["real", {"kind": "classic", "options": {"copies": [1]}}], runs=1)
    run_dir = tmp_path / "s"
    calls = []

    def flaky(task, context, folder):
        calls.append(task.folder)
        if task.classifier == "cnn" and task.condition.name == "classic-x1":
            raise RuntimeError("out of\tmemory\n(simulated)")
        return original(task, context, folder)

    original = executors.run_task
    monkeypatch.setattr(executors, "run_task", flaky)
    with pytest.raises(StudyTaskError, match=r"1 of 4 study tasks failed.*failed_tasks.tsv.*rerun the same command"):
        run_study(config)
    failed = pd.read_csv(run_dir / "failed_tasks.tsv", sep="\t")
    assert failed.to_dict("records") == [{"classifier": "cnn", "condition": "classic-x1", "run": 0,
                                          "error": "RuntimeError: out of memory (simulated)"}]
    assert calls.count(Path("runs/cnn/classic-x1/run-00")) == 2  # retried once (max_retries: 1)
    assert not (run_dir / "runs/cnn/classic-x1/run-00").exists()
    finished = run_dir / "runs/cnn/real/run-00/metrics.tsv"
    assert finished.is_file() and (run_dir / "runs/sklearn-knn/classic-x1/run-00/metrics.tsv").is_file()
    assert not (run_dir / "summary.tsv").exists()

    stamp = finished.stat().st_mtime_ns
    monkeypatch.setattr(executors, "run_task", original)
    result = run_study(config)
    assert result["tasks"] == 4 and (run_dir / "summary.tsv").is_file()
    assert finished.stat().st_mtime_ns == stamp  # finished tasks were skipped
    assert not (run_dir / "failed_tasks.tsv").exists()


def test_ray_executor_without_ray_names_the_extra(study_cohort, study_config, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    config = study_config(study_cohort, tmp_path / "s", conditions=["real"], classifiers=["sklearn-knn"], runs=1,
                          executor={"kind": "ray"})
    with pytest.raises(ConfigError, match=r"pip install 'medaug\[ray\]'"):
        run_study(config)


@pytest.fixture
def two_torch_threads():
    """This process at 2 torch threads (building the cohort left it at 1): each task's thread count,
    on which CPU results depend, must come from executor.cpus_per_task."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
def test_ray_executor_gives_the_sequential_results_and_reports_failed_tasks(study_cohort, study_config, tmp_path,
                                                                           two_torch_threads):
    pytest.importorskip("ray")
    # k-NN (k = 5) cannot fit the 2 + 2 images of synthetic-prior-n2: exactly those 2 tasks (runs 0, 1) fail
    failing = {"conditions": ["real", "synthetic"], "samplers": [{"name": "prior"}], "synthetic_per_class": [2, 4]}
    on_ray = {"kind": "ray", "cpus_per_task": 1}
    folders = {"sequential": tmp_path / "sequential", "ray": tmp_path / "ray"}
    for name, folder in folders.items():
        executor = on_ray if name == "ray" else {}
        with pytest.raises(StudyTaskError, match="2 of 12 study tasks failed"):
            run_study(study_config(study_cohort, folder, **failing, executor=executor))
    sequential, distributed = (_results(folder) for folder in folders.values())
    assert distributed == sequential
    failed = pd.read_csv(folders["ray"] / "failed_tasks.tsv", sep="\t")
    assert failed[["classifier", "condition", "run"]].values.tolist() == [["sklearn-knn", "synthetic-prior-n2", 0],
                                                                          ["sklearn-knn", "synthetic-prior-n2", 1]]
    assert failed["error"].str.startswith("ValueError: Expected n_neighbors <= n_samples").all()

    # without the failing condition, the rerun completes; Ray skips the finished tasks
    finished = folders["ray"] / "runs/cnn/real/run-00/metrics.tsv"
    stamp = finished.stat().st_mtime_ns
    for name, folder in folders.items():
        executor = on_ray if name == "ray" else {}
        run_study(study_config(study_cohort, folder, **{**failing, "synthetic_per_class": [4]}, executor=executor))
    assert finished.stat().st_mtime_ns == stamp
    sequential, distributed = (_results(folder) for folder in folders.values())
    assert Path("summary.tsv") in distributed and Path("failed_tasks.tsv") not in distributed
    assert distributed == sequential


def test_tasks_at_once_in_worker_processes_give_the_one_at_a_time_results(study_cohort, study_config, tmp_path,
                                                                          two_torch_threads):
    """Two tasks at once in spawned processes: the same bytes per task as one at a time in this
    process, failures (k-NN cannot fit 2 + 2 images) listed and retried alike."""
    failing = {"conditions": ["real", "synthetic"], "samplers": [{"name": "prior"}], "synthetic_per_class": [2, 4],
               "classifiers": ["sklearn-knn", "sklearn-svm"]}
    folders = {1: tmp_path / "one", 2: tmp_path / "two"}
    for at_once, folder in folders.items():
        with pytest.raises(StudyTaskError, match="2 of 12 study tasks failed"):
            run_study(study_config(study_cohort, folder, **failing, executor={"tasks_at_once": at_once}))
    one, two = (_results(folder) for folder in folders.values())
    assert two == one and Path("failed_tasks.tsv") in two


def test_tasks_at_once_is_sized_from_free_device_memory():
    from medaug.study.config import ExecutorSection

    gib = 2**30
    assert executors.tasks_that_fit(free_bytes=70 * gib, peak_bytes=10 * gib, limit=16) == 5  # 10 GiB × 1.2 each
    assert executors.tasks_that_fit(free_bytes=5 * gib, peak_bytes=10 * gib, limit=16) == 1
    assert executors.tasks_that_fit(free_bytes=70 * gib, peak_bytes=gib, limit=4) == 4
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert executors.tasks_at_once(ExecutorSection(), cpu, pending=10) == 1  # auto on the CPU: one at a time
    assert executors.tasks_at_once(ExecutorSection(tasks_at_once=3), cpu, pending=10) == 3
    assert executors.tasks_at_once(ExecutorSection(tasks_at_once=3), cpu, pending=2) == 2
    assert executors.tasks_at_once(ExecutorSection(cpus_per_task=1), gpu, pending=10_000) == (os.cpu_count() or 1)
    with pytest.raises(ConfigError, match="executor.tasks_at_once must be ≥ 1 or auto, got 0"):
        ExecutorSection(tasks_at_once=0)
    with pytest.raises(ConfigError, match="executor.tasks_at_once: expected a whole number or one of 'auto'"):
        ExecutorSection.from_dict({"tasks_at_once": "all"})


def test_auto_packing_follows_the_largest_gpu_peak_and_backs_off_after_running_out_of_memory():
    gib = 2**30
    packing = executors._Packing(slots=1, limit=8, auto=True, device=torch.device("cuda"), capacity=100 * gib)
    packing.measured(0)  # a task that did not use the GPU (an sklearn classifier) sizes nothing
    assert packing.slots == 1
    packing.measured(10 * gib)
    assert packing.slots == 8  # 100 / (10 × 1.2) = 8.3
    packing.measured(30 * gib)
    assert packing.slots == 2  # the largest peak so far decides
    packing.measured(gib)
    assert packing.slots == 2
    packing.out_of_memory()
    packing.measured(gib)
    assert (packing.slots, packing.limit) == (1, 1)
    fixed = executors._Packing(slots=3, limit=3, auto=False, device=torch.device("cuda"), capacity=gib)
    fixed.measured(10 * gib)
    assert fixed.slots == 3
