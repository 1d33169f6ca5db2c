"""Run a study's pending tasks: ``sequential`` on this machine, one at a time in this process or
``tasks_at_once`` in spawned worker processes (on a GPU, ``auto`` runs the first task alone, then as
many at once as the free memory holds at its peak: one CNN run leaves most of a large GPU idle), or
``ray`` (``pip install 'medaug[ray]'``; one remote task per (classifier, condition, run) with the
executor section's CPU / GPU requests, on a local Ray or the cluster at ``executor.address``).

Each task writes its own folder (:func:`~medaug.study.tasks.run_task`), so the run folder stays the
single source of results: a failed task never loses finished ones, and rerunning resumes. Both
executors give every task ``cpus_per_task`` torch threads (CPU float results depend on the thread
count), so they give identical results. Failed tasks are logged and listed in ``failed_tasks.tsv``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from medaug.compute import resolve_device
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


HEADROOM = 1.2  # device memory per packed task: its first task's peak × this


def tasks_that_fit(free_bytes: int, peak_bytes: int, limit: int) -> int:
    """Tasks at once on a device with ``free_bytes`` free, each taking ``peak_bytes`` (with 20 %
    headroom), between 1 and ``limit``."""
    if peak_bytes <= 0:
        return max(1, limit)
    return max(1, min(limit, int(free_bytes // (HEADROOM * peak_bytes))))


_WORKER: dict = {}  # a worker process's study context, run folder and device


def _start_worker(context: StudyContext, run_dir: Path, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(context=context, run_dir=run_dir, device=resolve_device(context.config.device))


def _worker_task(task: StudyTask) -> int:
    """One task in a worker process; returns its peak device memory in bytes (0 on the CPU)."""
    device = _WORKER["device"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run_task(task, _WORKER["context"], _WORKER["run_dir"])
    return torch.cuda.max_memory_reserved(device) if device.type == "cuda" else 0


@dataclass
class _Packing:
    """How many tasks run at once. ``auto`` on a GPU starts at one and, after each task that used
    the GPU, fits as many as the free memory measured after the first one holds at the largest peak
    seen so far; a task that runs out of device memory takes one slot away (and is retried)."""

    slots: int
    limit: int
    auto: bool
    device: torch.device
    capacity: int | None = None
    largest: int = 0

    def measured(self, peak: int) -> None:
        if not self.auto or peak <= 0:
            return
        if self.capacity is None:  # nothing else runs yet: the memory a packed set may use
            torch.cuda.empty_cache()
            self.capacity = torch.cuda.mem_get_info(self.device)[0]
        self.largest = max(self.largest, peak)
        slots = tasks_that_fit(self.capacity, self.largest, self.limit)
        if slots != self.slots:
            logger.info("study tasks peaked at %.1f GB of device memory: %d tasks at once", self.largest / 1e9, slots)
        self.slots = slots

    def out_of_memory(self) -> None:
        self.slots = max(1, self.slots - 1)
        self.limit = self.slots  # never packed above what failed again


def _process_pool(context: StudyContext, run_dir: Path, executor: ExecutorSection, limit: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=limit, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(context, run_dir, executor.cpus_per_task))


def _run_processes(pending: list[StudyTask], context: StudyContext, run_dir: Path, executor: ExecutorSection,
                   limit: int, device: torch.device) -> list[dict]:
    """Up to ``limit`` tasks at once, each in a spawned process with ``cpus_per_task`` threads (the
    same results per seed as one at a time). ``tasks_at_once: auto`` on a GPU sizes the packing
    from the tasks' peak memory (:class:`_Packing`). A worker that dies (killed for memory) breaks
    the pool: its tasks count a failed attempt and a new pool takes the rest."""
    auto = executor.tasks_at_once == "auto"
    packing = _Packing(1 if auto else limit, limit, auto, device)
    attempts = {task: 0 for task in pending}
    queue, running, failures = list(pending), {}, {}
    pool = _process_pool(context, run_dir, executor, limit)
    try:
        with tqdm(total=len(pending), desc=f"study runs (up to {limit} at once)", unit="run") as progress:
            while queue or running:
                while queue and len(running) < packing.slots:
                    task = queue.pop(0)
                    running[pool.submit(_worker_task, task)] = task
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                broken = False
                for future in done:
                    task = running.pop(future)
                    broken |= _after(future, task, queue, attempts, failures, executor, progress, packing)
                if broken:  # every running task of a broken pool fails too: book them, then start a new pool
                    for future in wait(list(running)).done:
                        _after(future, running.pop(future), queue, attempts, failures, executor, progress, packing)
                    pool.shutdown(wait=True, cancel_futures=True)
                    pool = _process_pool(context, run_dir, executor, limit)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [failures[task] for task in pending if task in failures]


def _after(future: Future, task: StudyTask, queue: list, attempts: dict, failures: dict, executor: ExecutorSection,
           progress, packing: _Packing) -> bool:
    """Book a finished task (retry or failure, resizing the packing); True when its pool broke."""
    try:
        peak = future.result()
    except Exception as error:
        if "out of memory" in str(error).lower():
            packing.out_of_memory()
        attempts[task] += 1
        if attempts[task] <= executor.max_retries:
            logger.warning("study task %s failed (%s); retrying", task.folder, error)
            queue.insert(0, task)
        else:
            failures[task] = _failure(task, error)
            progress.update()
        return isinstance(error, BrokenProcessPool)
    progress.update()
    packing.measured(peak)
    return False


def tasks_at_once(executor: ExecutorSection, device: torch.device, pending: int) -> int:
    """The most tasks that may run at once: ``tasks_at_once``, or for ``auto`` on a GPU the CPU
    cores over ``cpus_per_task`` (memory decides below that), on the CPU one; never more than
    ``pending``."""
    if executor.tasks_at_once != "auto":
        return min(executor.tasks_at_once, pending)
    if device.type != "cuda":
        return 1
    return max(1, min(pending, (os.cpu_count() or 1) // executor.cpus_per_task))


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
    if pending and executor.kind == "ray":
        failures = _run_ray(pending, context, run_dir, executor)
    elif pending:
        device = resolve_device(context.config.device)
        limit = tasks_at_once(executor, device, len(pending))
        failures = (_run_sequential(pending, context, run_dir, executor) if limit == 1
                    else _run_processes(pending, context, run_dir, executor, limit, device))
    record = run_dir / FAILURES_FILE
    if failures:
        write_tsv(record, pd.DataFrame(failures, columns=["classifier", "condition", "run", "error"]))
    else:
        record.unlink(missing_ok=True)
    return failures
