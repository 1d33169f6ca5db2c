"""Batch ``t1-linear`` over a cohort table into a CAPS-like tree, resumable, one failure never stops the batch.

Per image (``subjects/sub-X/ses-Y/t1_linear/``): the 1 mm crop image with Clinica naming, the
template → image transform (4×4 RAS text), a JSON sidecar with provenance and QC, and, with a
``size``, a resized and min-max rescaled copy (``res-<size>``). ``t1_linear_qc.tsv`` lists every
image with its status (``ok``, ``flagged`` by QC, ``failed`` with the reason).
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
from tqdm import tqdm

from medaug.data.clinica import caps_t1_linear_path
from medaug.data.dataset import LoadT1wd
from medaug.data.derivatives import DerivativeDataset, sidecar_path
from medaug.errors import MedaugError, OutputExistsError
from medaug.io import write_json, write_text, write_tsv
from medaug.preprocessing.pipeline import T1LinearConfig, output_transforms, t1_linear
from medaug.preprocessing.template import RegistrationTemplate, load_registration_template
from medaug.preprocessing.transforms import TRANSFORM_KEY
from medaug.provenance import read_json_object

logger = logging.getLogger(__name__)

QC_COLUMNS = ["participant_id", "session_id", "status", "qc_ncc", "scale_min", "scale_max",
              "registration_metric", "seconds", "reason", "source", "path"]
CONFIG_FILE = Path("code") / "medaug_t1_linear.json"
QC_FILE = "t1_linear_qc.tsv"

_PIPELINE = None  # per worker process: (config, composed pipeline, space)


def _transform_path(image_path: Path, space: str) -> Path:
    stem = image_path.name.split("_space-")[0]
    return image_path.with_name(f"{stem}_from-{space}_to-T1w_mode-image_xfm.txt")


def _install(config: T1LinearConfig, threads: int, template: RegistrationTemplate | None = None) -> None:
    global _PIPELINE
    torch.set_num_threads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    template = template or load_registration_template(config.template, space=config.template_space)
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
                  "Parameters": config.to_dict(), "QC": qc}
    write_text(_transform_path(out_path, space), "\n".join(" ".join(f"{v:.8f}" for v in r)
                                                           for r in data[TRANSFORM_KEY]) + "\n")
    image = data["image"]
    if config.size:
        _write_resized(image, config.size, derivative, caps_dir, row, space, provenance)
    # the 1 mm image and its sidecar come last: their presence marks the image as finished
    derivative.write_image(out_path, image[0], image.affine.numpy(), provenance, sources=[row["path"]])
    status = "ok" if qc["pass"] else "flagged"
    return _qc_row(row, status, {"QC": qc}, qc["reason"], time.perf_counter() - start, str(out_path))


def _write_resized(image, size, derivative: DerivativeDataset, caps_dir, row: dict, space: str,
                   provenance: dict) -> None:
    """The resized, min-max rescaled copy (``res-<X>x<Y>x<Z>``) of a 1 mm crop image."""
    resized = output_transforms(size)({"image": image})["image"]
    path = caps_t1_linear_path(caps_dir, row["participant_id"], row["session_id"], space,
                               resolution="x".join(map(str, size)))
    derivative.write_image(path, resized[0], resized.affine.numpy(),
                           {**provenance, "Description": f"{provenance['Description']}, "
                            f"trilinear resize to {size}, min-max rescaled to [0, 1]"}, sources=[row["path"]])


def _finished(row: dict, caps_dir: Path, space: str, size: tuple[int, int, int] | None,
              sources: list[str]) -> dict | None:
    """The QC row of an already preprocessed image (adding a missing resized copy), else None."""
    path = caps_t1_linear_path(caps_dir, row["participant_id"], row["session_id"], space)
    sidecar = sidecar_path(path)
    if not (path.exists() and sidecar.exists()):
        return None
    recorded = read_json_object(sidecar, f"delete it and {path.name}, then rerun `medaug preprocess` to redo the image")
    if size and not caps_t1_linear_path(caps_dir, row["participant_id"], row["session_id"], space,
                                        resolution="x".join(map(str, size))).exists():
        _write_resized(LoadT1wd()({"image": str(path)})["image"], size,
                       DerivativeDataset(caps_dir, "medaug-t1-linear", sources), caps_dir, row, space, recorded)
    status = "ok" if recorded["QC"]["pass"] else "flagged"
    return _qc_row(row, status, recorded, recorded["QC"]["reason"], 0.0, str(path))


def preprocess_cohort(cohort: pd.DataFrame, caps_dir: str | os.PathLike, config: T1LinearConfig | None = None, *,
                      sources: list[str | os.PathLike] = (), jobs: int = 1) -> pd.DataFrame:
    """Run ``t1-linear`` on every row of ``cohort`` into ``caps_dir``; return (and write) the QC table.

    Re-running with the same configuration skips finished images and retries failed ones; a
    different configuration in the same folder is refused.
    """
    config = config or T1LinearConfig()
    caps_dir = Path(caps_dir)
    sources = [str(Path(s).resolve()) for s in sources]
    template = load_registration_template(config.template, space=config.template_space)
    space = template.space
    DerivativeDataset(caps_dir, "medaug-t1-linear", sources, "Clinica t1-linear equivalent (SimpleITK)")
    recorded = caps_dir / CONFIG_FILE
    registration = {k: v for k, v in config.to_dict().items() if k != "size"}
    if recorded.exists() and {k: v for k, v in read_json_object(recorded, "use a new output folder")["config"].items()
                              if k != "size"} != registration:
        raise OutputExistsError(f"{caps_dir} was preprocessed with other parameters ({recorded}); "
                                "use a new output folder or the same parameters (only size may change)")
    write_json(recorded, {"config": config.to_dict()})

    rows = cohort[["participant_id", "session_id", "path"]].to_dict("records")
    results, todo = [], []
    for row in rows:
        done = _finished(row, caps_dir, space, config.size, sources)
        (results.append(done) if done else todo.append(row))
    if len(rows) > len(todo):
        logger.info("%d of %d images already preprocessed in %s: skipped", len(rows) - len(todo), len(rows), caps_dir)
    progress = tqdm(total=len(todo), desc="t1-linear", unit="image", disable=not todo)
    if jobs == 1:
        _install(config, threads=max(1, os.cpu_count() or 1), template=template)
        for row in todo:
            results.append(process_image(row, str(caps_dir), sources))
            progress.update()
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                                 initializer=_install, initargs=(config, threads)) as pool:
            futures = [pool.submit(process_image, row, str(caps_dir), sources) for row in todo]
            for future in as_completed(futures):
                results.append(future.result())
                progress.update()
    progress.close()
    qc = pd.DataFrame(results, columns=QC_COLUMNS).sort_values(["participant_id", "session_id"])
    write_tsv(caps_dir / QC_FILE, qc.reset_index(drop=True))
    for row in qc[qc["status"] != "ok"].itertuples():
        logger.warning("%s %s %s: %s", row.participant_id, row.session_id, row.status, row.reason)
    return qc.reset_index(drop=True)
