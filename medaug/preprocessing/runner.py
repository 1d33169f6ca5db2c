"""Batch ``t1-linear`` over a cohort table into a CAPS-like tree, resumable, one failure never stops the batch.

Per image (``subjects/sub-X/ses-Y/t1_linear/``): the 1 mm crop image with Clinica naming, the
template → image transform (4×4 RAS text), a JSON sidecar with provenance and QC, and, with a
``size``, a resized and min-max rescaled copy (``res-<size>``). ``t1_linear_qc.tsv`` lists every
image with its status (``ok``, ``flagged`` by QC, ``failed`` with the reason); it is rewritten as
images finish, so an interrupted batch leaves the table of what finished.

Each image runs in a worker process (pebble) that is killed past ``max_seconds_per_image``; images
whose NIfTI header shows an implausible spacing or field of view, or an estimated working memory
over ``max_memory_gb``, fail before any voxel is read.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import as_completed
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
from pebble import ProcessExpired, ProcessPool
from tqdm import tqdm

from medaug.data.clinica import caps_t1_linear_path
from medaug.data.dataset import LoadT1wd
from medaug.data.derivatives import DerivativeDataset, sidecar_path
from medaug.errors import MedaugError, OutputExistsError
from medaug.io import write_json, write_text, write_tsv
from medaug.preprocessing.pipeline import T1LinearConfig, output_transforms, t1_linear
from medaug.preprocessing.template import load_registration_template
from medaug.preprocessing.transforms import TRANSFORM_KEY
from medaug.provenance import read_json_object
from medaug.run_folder import FolderLock, file_signature
from medaug.workers import check_main_guarded

logger = logging.getLogger(__name__)

QC_COLUMNS = ["participant_id", "session_id", "status", "qc_ncc", "scale_min", "scale_max",
              "registration_metric", "seconds", "reason", "source", "path"]
CONFIG_FILE = Path("code") / "medaug_t1_linear.json"
QC_FILE = "t1_linear_qc.tsv"
# float32 copies of the input image alive at the pipeline's peak (float read, N4 field at full
# resolution, registration pyramid, resampling): ≈ 11 measured on a 192³ image, 48 bytes a voxel
WORKING_COPIES = 12

_PIPELINE = None  # per worker process: (config, composed pipeline, space)


def _transform_path(image_path: Path, space: str) -> Path:
    stem = image_path.name.split("_space-")[0]
    return image_path.with_name(f"{stem}_from-{space}_to-T1w_mode-image_xfm.txt")


def _install(config: T1LinearConfig, threads: int) -> None:
    """Worker initializer: thread counts and the composed pipeline."""
    global _PIPELINE
    torch.set_num_threads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    template = load_registration_template(config.template, space=config.template_space)
    _PIPELINE = (config, t1_linear(config, template, resize_and_rescale=False), template.space)


def _qc_row(row: dict, status: str, sidecar: dict | None, reason: str, seconds: float, path: str) -> dict:
    qc = (sidecar or {}).get("QC", {})
    scales = qc.get("scales", [np.nan])
    return {"participant_id": row["participant_id"], "session_id": row["session_id"], "status": status,
            "qc_ncc": round(qc.get("ncc", np.nan), 4), "scale_min": round(min(scales), 4),
            "scale_max": round(max(scales), 4), "registration_metric": round(qc.get("registration_metric", np.nan), 4),
            "seconds": round(seconds, 2),
            "reason": reason, "source": row["path"], "path": path}


def process_image(row: dict, caps_dir: str, sources: list[str]) -> dict:
    """Preprocess one image and write its outputs; returns its QC row (never raises for bad input)."""
    config, pipeline, space = _PIPELINE
    start = time.perf_counter()
    out_path = caps_t1_linear_path(caps_dir, row["participant_id"], row["session_id"], space)
    try:
        data = pipeline(LoadT1wd()({"image": row["path"]}))
    except Exception as error:  # one image's failure is recorded, never fatal for the batch
        cause = error
        while cause.__cause__ is not None and not isinstance(cause, MedaugError):
            cause = cause.__cause__
        reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        return _qc_row(row, "failed", None, reason, time.perf_counter() - start, "")
    qc = {"ncc": data["qc_ncc"], "scales": data["qc_scales"], "registration_metric": data["registration_metric"],
          "pass": data["qc_pass"], "reason": data["qc_reason"]}
    derivative = DerivativeDataset(caps_dir, "medaug-t1-linear", sources)
    provenance = {"Description": "N4 bias correction, affine registration to the template, Clinica crop grid",
                  "SpatialReference": {"space": space}, "Template": config.template or "nilearn MNI152 2009a",
                  "Parameters": config.to_dict(), "QC": qc, "SourceSignature": file_signature(row["path"])}
    write_text(_transform_path(out_path, space), "\n".join(" ".join(f"{v:.8f}" for v in r)
                                                           for r in data[TRANSFORM_KEY]) + "\n")
    image = data["image"]
    if config.size:
        resized = _write_resized(image, config.size, derivative, caps_dir, row, space, provenance)
    # the 1 mm image and its sidecar come last: their presence marks the image as finished (without
    # write_crop the resized copy, written last, does)
    if config.write_crop:
        derivative.write_image(out_path, image[0], image.affine.numpy(), provenance, sources=[row["path"]])
    status = "ok" if qc["pass"] else "flagged"
    return _qc_row(row, status, {"QC": qc}, qc["reason"], time.perf_counter() - start,
                   str(out_path if config.write_crop else resized))


def _write_resized(image, size, derivative: DerivativeDataset, caps_dir, row: dict, space: str,
                   provenance: dict) -> Path:
    """The resized, min-max rescaled copy (``res-<X>x<Y>x<Z>``) of a 1 mm crop image; returns its path."""
    resized = output_transforms(size)({"image": image})["image"]
    path = caps_t1_linear_path(caps_dir, row["participant_id"], row["session_id"], space,
                               resolution="x".join(map(str, size)))
    derivative.write_image(path, resized[0], resized.affine.numpy(),
                           {**provenance, "Description": f"{provenance['Description']}, "
                            f"trilinear resize to {size}, min-max rescaled to [0, 1]"}, sources=[row["path"]])
    return path


def _finished(row: dict, caps_dir: Path, space: str, config: T1LinearConfig, sources: list[str]) -> dict | None:
    """The QC row of an already preprocessed image (adding a missing resized copy); None when it
    is not done (its 1 mm image, or without ``write_crop`` its resized copy, is missing) or its
    source file changed since (size, mtime)."""
    size = config.size
    path = caps_t1_linear_path(caps_dir, row["participant_id"], row["session_id"], space)
    if not config.write_crop and not path.exists():
        path = caps_t1_linear_path(caps_dir, row["participant_id"], row["session_id"], space,
                                   resolution="x".join(map(str, size)))
    sidecar = sidecar_path(path)
    if not (path.exists() and sidecar.exists()):
        return None
    recorded = read_json_object(sidecar, f"delete it and {path.name}, then rerun `medaug preprocess` to redo the image")
    qc = recorded.get("QC")
    if not (isinstance(qc, dict) and {"pass", "reason"} <= set(qc)):
        logger.warning("%s has no QC record: redoing %s", sidecar, row["path"])
        return None
    if recorded.get("SourceSignature") != file_signature(row["path"]):
        why = ("changed (size or modification time) since it was preprocessed" if "SourceSignature" in recorded
               else "was preprocessed before medaug recorded sources")
        logger.warning("%s %s: redoing it", row["path"], why)
        return None
    if size and not caps_t1_linear_path(caps_dir, row["participant_id"], row["session_id"], space,
                                        resolution="x".join(map(str, size))).exists():
        _write_resized(LoadT1wd()({"image": str(path)})["image"], size,
                       DerivativeDataset(caps_dir, "medaug-t1-linear", sources), caps_dir, row, space, recorded)
    status = "ok" if recorded["QC"]["pass"] else "flagged"
    return _qc_row(row, status, recorded, recorded["QC"]["reason"], 0.0, str(path))


def _header_problem(path: str, config: T1LinearConfig) -> str | None:
    """Why the NIfTI header alone rules the image out (spacing, field of view, memory), else None."""
    try:
        image = nib.load(path)  # the header only: no voxel is read
    except Exception:  # a missing or unreadable file: the loader reports it, naming the file
        return None
    shape, spacing = image.shape, nib.affines.voxel_sizes(image.affine)
    low, high = config.spacing_range_mm
    if not all(low <= s <= high for s in spacing):
        return (f"voxel spacing {_mm(spacing)} mm is implausible for a T1w (spacing_range_mm {low:g}–{high:g}); "
                "fix the header's pixdim / affine, or widen spacing_range_mm")
    field_of_view = [n * s for n, s in zip(shape, spacing)]
    if max(field_of_view) > config.max_field_of_view_mm:
        return (f"field of view {_mm(field_of_view)} mm ({'x'.join(map(str, shape))} voxels) is over "
                f"max_field_of_view_mm {config.max_field_of_view_mm:g}; fix the header or crop the image")
    gigabytes = math.prod(shape) * 4 * WORKING_COPIES / 1e9
    if gigabytes > config.max_memory_gb:
        return (f"{'x'.join(map(str, shape))} voxels need about {gigabytes:.2g} GB to preprocess, over "
                f"max_memory_gb {config.max_memory_gb:g}; downsample or crop the image, or raise max_memory_gb")
    return None


def _mm(values) -> str:
    return " x ".join(f"{v:g}" for v in values)


def _check_parameters(caps_dir: Path, config: T1LinearConfig) -> None:
    """Refuse a folder preprocessed with other registration parameters, else record this configuration."""
    recorded = caps_dir / CONFIG_FILE
    if recorded.exists():
        before = T1LinearConfig.from_dict(read_json_object(recorded, "use a new output folder")["config"],
                                          where=str(recorded))
        if before.registration_parameters() != config.registration_parameters():
            raise OutputExistsError(f"{caps_dir} was preprocessed with other parameters ({recorded}); use a new "
                                    "output folder or the same parameters (only size and the per-image limits "
                                    "may change)")
    write_json(recorded, {"config": config.to_dict()})


def _write_qc(caps_dir: Path, results: list[dict]) -> pd.DataFrame:
    """The QC table of the images done so far, sorted, written atomically."""
    qc = pd.DataFrame(results, columns=QC_COLUMNS).sort_values(["participant_id", "session_id"])
    qc = qc.reset_index(drop=True)
    write_tsv(caps_dir / QC_FILE, qc)
    return qc


@contextmanager
def _worker_pool(config: T1LinearConfig, workers: int) -> Iterator[ProcessPool]:
    """Worker processes with the pipeline installed; on leaving (done, an error, Ctrl-C) every worker is stopped."""
    check_main_guarded(f"preprocess_cohort ({workers} worker(s))")
    # forkserver: workers never inherit the threads of torch / ITK pools; preloading the pipeline's
    # imports makes each start (and each restart after a killed image) fast
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPool(max_workers=workers, initializer=_install, initargs=(config, threads), context=context)
    try:
        yield pool
    finally:
        pool.stop()  # kills a worker still running: no orphan process
        pool.join()


def _outcome(future, row: dict, config: T1LinearConfig) -> dict:
    """The QC row of a scheduled image, also when its worker was killed or died."""
    try:
        return future.result()
    except TimeoutError:  # pebble killed the worker
        limit = config.max_seconds_per_image
        return _qc_row(row, "failed", None, f"over the {limit:g} s time limit (max_seconds_per_image); check the "
                       "image's size and spacing, or raise max_seconds_per_image", limit, "")
    except ProcessExpired as error:
        return _qc_row(row, "failed", None, f"the worker process died (exit code {error.exitcode}), out of memory? "
                       "lower max_memory_gb or --jobs", 0.0, "")


def preprocess_cohort(cohort: pd.DataFrame, caps_dir: str | os.PathLike, config: T1LinearConfig | None = None, *,
                      sources: list[str | os.PathLike] = (), jobs: int = 1) -> pd.DataFrame:
    """Run ``t1-linear`` on every row of ``cohort`` into ``caps_dir``; return (and write) the QC table.

    Re-running with the same configuration skips finished images, retries failed ones and redoes
    images whose source file changed; other registration parameters in the same folder are
    refused, and a second concurrent run in the folder is refused by its lock.
    """
    config = config or T1LinearConfig()
    caps_dir = Path(caps_dir)
    sources = [str(Path(s).resolve()) for s in sources]
    space = load_registration_template(config.template, space=config.template_space).space
    DerivativeDataset(caps_dir, "medaug-t1-linear", sources, "Clinica t1-linear equivalent (SimpleITK)")
    with FolderLock(caps_dir, "medaug preprocess"):
        return _preprocess(cohort, caps_dir, config, sources, jobs, space)


def _preprocess(cohort: pd.DataFrame, caps_dir: Path, config: T1LinearConfig, sources: list[str], jobs: int,
                space: str) -> pd.DataFrame:
    _check_parameters(caps_dir, config)

    rows = cohort[["participant_id", "session_id", "path"]].to_dict("records")
    finished = [_finished(row, caps_dir, space, config, sources) for row in rows]
    results = [done for done in finished if done]
    if results:
        logger.info("%d of %d images already preprocessed in %s: skipped", len(results), len(rows), caps_dir)
    todo = []
    for row in (row for row, done in zip(rows, finished) if not done):
        problem = _header_problem(row["path"], config)
        (results.append(_qc_row(row, "failed", None, problem, 0.0, "")) if problem else todo.append(row))
    if todo:
        with tqdm(total=len(todo), desc="t1-linear", unit="image") as progress, \
                _worker_pool(config, min(jobs, len(todo))) as pool:
            futures = {pool.schedule(process_image, args=(row, str(caps_dir), sources),
                                     timeout=config.max_seconds_per_image): row for row in todo}
            for future in as_completed(futures):
                results.append(_outcome(future, futures[future], config))
                _write_qc(caps_dir, results)
                progress.update()
    qc = _write_qc(caps_dir, results)
    for row in qc[qc["status"] != "ok"].itertuples():
        logger.warning("%s %s %s: %s", row.participant_id, row.session_id, row.status, row.reason)
    return qc
