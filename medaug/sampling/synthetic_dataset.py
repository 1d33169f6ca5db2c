"""Write synthetic images as a BIDS derivative: ``sub-synth<label>NNNN_desc-synthetic_T1w.nii.gz``
with a provenance sidecar (generator, sampler, seed, class, training-set fingerprint).

The listing TSV of a class and seed is written last and is the commit record: an image that no
listing in the folder names is the leftover of an interrupted write and is replaced."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import torch

from medaug.data.derivatives import DerivativeDataset
from medaug.data.volumes import write_volume_file
from medaug.io import write_text, write_tsv
from medaug.provenance import GeneratorProvenance
from medaug.run_folder import FolderLock, replace_unlisted
from medaug.sampling.samplers import Sampler


def label_token(label: str) -> str:
    """The diagnosis as it appears in synthetic participant labels and listings (alphanumeric)."""
    return "".join(ch for ch in label if ch.isalnum())


def synthetic_listing(out_dir: str | os.PathLike, label: str, seed: int) -> Path:
    """The TSV that :func:`write_synthetic` writes for one class and seed."""
    return Path(out_dir) / f"synthetic_{label_token(label)}_seed{seed}.tsv"


LISTING = re.compile(r"^synthetic_[A-Za-z0-9]*_seed\d+\.tsv$")


def listings(out_dir: str | os.PathLike) -> list[Path]:
    """The listing TSVs of a synthetic folder (not the per-sample ``.nearest.tsv`` beside them)."""
    return sorted(p for p in Path(out_dir).glob("synthetic_*_seed*.tsv") if LISTING.match(p.name))


def pool_file(out_dir: str | os.PathLike, label: str, seed: int) -> Path:
    """The float16 image stack that :func:`write_synthetic` fills when asked (``pool=True``)."""
    return synthetic_listing(out_dir, label, seed).with_suffix(".npy")


def write_synthetic(latents: torch.Tensor, images: Iterable[torch.Tensor], out_dir: str | os.PathLike, *,
                    label: str, model_dir: str | os.PathLike, sampler: Sampler, seed: int, start_index: int = 1,
                    pool: bool = False, workers: int = 4, diagnostics: dict | None = None) -> pd.DataFrame:
    """Write every image with its sidecar as the batches (B, C, *spatial) of ``images`` arrive;
    with ``pool``, also a float16 stack of them (:func:`pool_file`) that studies read without
    decompressing NIfTIs. ``workers`` threads compress the files. The sampler's chain
    ``diagnostics`` (acceptance, step size, ESS, R̂, warnings) go into every sidecar. Returns (and
    writes, last) the listing ``synthetic_<label>_seed<seed>.tsv``."""
    model_dir = Path(model_dir)
    provenance = GeneratorProvenance.read(model_dir, finished=False)  # unrecorded affine: identity
    affine = provenance.affine
    dataset = DerivativeDataset(out_dir, "medaug-synthetic", description="synthetic images from medaug generators")
    clean = label_token(label)
    common = {"Synthetic": True, "Label": label,
              **provenance.sidecar_fields(model_dir, json.loads((model_dir / "config.json").read_text())["model"]),
              "Sampler": sampler.config(), "SamplerDiagnostics": diagnostics or {}, "Seed": seed}
    participants = [f"synth{clean}{start_index + i:04d}" for i in range(len(latents))]
    paths = [dataset.path(participant, None, desc="synthetic") for participant in participants]

    def write_all(batches: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        offset = 0
        with ThreadPoolExecutor(workers) as threads:
            for batch in batches:
                futures = [threads.submit(dataset.write_image, paths[offset + i], image[0], affine,
                                          {**common, "SampleIndex": offset + i,
                                           "Latent": [round(float(v), 6) for v in latents[offset + i]]})
                           for i, image in enumerate(batch)]
                for future in futures:
                    future.result()
                offset += len(batch)
                yield batch
        if offset != len(latents):
            raise ValueError(f"{offset} images decoded for {len(latents)} latent codes")

    with FolderLock(out_dir, "medaug generate"):  # before the check: unlisted files may be another writer's
        listed = {Path(path).parents[1] for listing in listings(out_dir)
                  for path in pd.read_csv(listing, sep="\t", usecols=["path"])["path"]}
        replace_unlisted([path.parents[1] for path in paths], listed, f"a synthetic_*.tsv of {out_dir}")
        if pool:
            write_volume_file(pool_file(out_dir, label, seed), write_all(images),
                              (len(latents), *_image_shape(model_dir)), dtype="float16")
        else:
            for _ in write_all(images):
                pass
        table = pd.DataFrame({"participant_id": [f"sub-{p}" for p in participants],
                              "diagnosis": label, "synthetic": True, "path": [str(p) for p in paths]})
        write_tsv(synthetic_listing(out_dir, label, seed), table)
        write_text(Path(out_dir) / ".bidsignore", "synthetic_*.tsv\nsynthetic_*.npy\nsynthetic_*.json\n")
    return table


def _image_shape(model_dir: Path) -> tuple[int, ...]:
    return tuple(json.loads((model_dir / "config.json").read_text())["input_shape"])
