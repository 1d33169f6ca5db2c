"""Run a study's pending tasks: ``sequential`` in this process, or ``ray`` (``pip install
'medaug[ray]'``; one remote task per (classifier, condition, run) with the executor section's CPU /
GPU requests, on a local Ray or the cluster at ``executor.address``).

Each task writes its own folder (:func:`~medaug.study.tasks.run_task`), so the run folder stays the
single source of results: a failed task never loses finished ones, and rerunning resumes. Both
executors give every task ``cpus_per_task`` torch threads (CPU float results depend on the thread
count), so they give identical results. Failed tasks are logged and listed in ``failed_tasks.tsv``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from medaug.errors import ConfigError
from medaug.io import write_tsv
from medaug.study.config import ExecutorSection
from medaug.study.classifiers import CLASSIFIERS
from medaug.study.saved_classifiers import MODEL_DIR, model_complete
from medaug.study.tasks import METRICS_FILE, StudyContext, StudyTask, run_task

logger = logging.getLogger(__name__)
FAILURES_FILE = "failed_tasks.tsv"


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count for one task, restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _failure(task: StudyTask, error: BaseException) -> dict:
    """Log a failed task (with its traceback) and return its ``failed_tasks.tsv`` row."""
    cause = getattr(error, "cause", None) or error  # Ray wraps the task's own exception
    text = " ".join(f"{type(cause).__name__}: {cause}".split())
    logger.error("study task %s failed: %s", task.folder, text, exc_info=error)
    return {"classifier": task.classifier, "condition": task.condition.name, "run": task.run, "error": text}


def _run_sequential(pending: list[StudyTask], context: StudyContext, run_dir: Path,
                    executor: ExecutorSection) -> list[dict]:
    failures = []
    for task in tqdm(pending, desc="study runs", unit="run"):
        for attempt in range(executor.max_retries + 1):
            try:
                with _torch_threads(executor.cpus_per_task):
                    run_task(task, context, run_dir)
                break
            except Exception as error:
                if attempt == executor.max_retries:
                    failures.append(_failure(task, error))
                else:
                    logger.warning("study task %s failed (%s); retrying", task.folder, error)
    return failures


def _ray_task(task: StudyTask, context: StudyContext, run_dir: Path, threads: int) -> None:
    """One task on a Ray worker; it writes the task folder, nothing comes back but success."""
    torch.set_num_threads(threads)
    run_task(task, context, run_dir)


def _start_ray(ray, executor: ExecutorSection) -> None:
    if executor.address is None:  # "local": never a cluster found through RAY_ADDRESS or an earlier `ray start`
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
        return
    try:
        ray.init(address=executor.address, logging_level=logging.WARNING)
    except (ConnectionError, ValueError) as error:  # no cluster there, a bad address, ray:// without ray[client]
        raise ConfigError(f"cannot join the Ray cluster at executor.address {executor.address!r} ({error}); "
                          "start it (ray start --head) or remove the address for a local Ray") from None


def _run_ray(pending: list[StudyTask], context: StudyContext, run_dir: Path, executor: ExecutorSection) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor.kind: ray needs Ray: pip install 'medaug[ray]'") from None
    started = not ray.is_initialized()  # a Ray the caller started is used as it is, and left running
    if started:
        _start_ray(ray, executor)
    try:
        remote = ray.remote(_ray_task).options(num_cpus=executor.cpus_per_task, num_gpus=executor.gpus_per_task,
                                               max_retries=executor.max_retries, retry_exceptions=True)
        shared = ray.put(context)
        running = {remote.remote(task, shared, run_dir, executor.cpus_per_task): task for task in pending}
        failures = {}
        with tqdm(total=len(running), desc="study runs (ray)", unit="run") as progress:
            while running:
                (ready,), _ = ray.wait(list(running), num_returns=1)
                task = running.pop(ready)
                try:
                    ray.get(ready)
                except Exception as error:  # the task's exception after its retries, or a lost worker
                    failures[task] = _failure(task, error)
                else:
                    if not (run_dir / task.folder / METRICS_FILE).exists():
                        failures[task] = _failure(task, ConfigError(
                            f"the task finished on a Ray worker but {run_dir / task.folder / METRICS_FILE} is not "
                            "visible here; the study output must be on a filesystem every Ray node mounts at the "
                            "same path"))
                progress.update()
        return [failures[task] for task in pending if task in failures]  # in task order, not finishing order
    finally:
        if started:
            ray.shutdown()


def _done(task: StudyTask, context: StudyContext, run_dir: Path) -> bool:
    """Whether the task's folder holds its metrics (and, for a classifier that saves one, its whole
    model) for the current inputs (an outdated folder is deleted)."""
    folder = run_dir / task.folder
    if not task.record(context, run_dir).renew([folder], f"study task {task.folder}"):
        return False
    if CLASSIFIERS.get(task.classifier).saves_model and not model_complete(folder / MODEL_DIR):
        if (folder / METRICS_FILE).exists():
            logger.warning("study task %s: its saved model is missing or incomplete; training it again", task.folder)
        return False
    return (folder / METRICS_FILE).exists()


def run_pending(tasks: list[StudyTask], context: StudyContext, run_dir: Path,
                executor: ExecutorSection) -> list[dict]:
    """Run the tasks whose folder lacks ``metrics.tsv`` or whose inputs changed (their old folder is
    deleted first); return the failures (classifier, condition, run, error), also written to
    ``failed_tasks.tsv`` (removed when none failed)."""
    run_dir = Path(run_dir).resolve()  # Ray workers may run elsewhere than this process
    pending = [task for task in tasks if not _done(task, context, run_dir)]
    logger.info("%d of %d study tasks to run (%s executor)", len(pending), len(tasks), executor.kind)
    failures = []
    if pending:
        run = _run_ray if executor.kind == "ray" else _run_sequential
        failures = run(pending, context, run_dir, executor)
    record = run_dir / FAILURES_FILE
    if failures:
        write_tsv(record, pd.DataFrame(failures, columns=["classifier", "condition", "run", "error"]))
    else:
        record.unlink(missing_ok=True)
    return failures
