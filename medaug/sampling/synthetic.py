"""Write synthetic images as a BIDS derivative: ``sub-synth<label>NNNN_desc-synthetic_T1w.nii.gz``
with a provenance sidecar (generator, sampler, seed, class, training-set fingerprint)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from medaug.data.derivatives import DerivativeDataset
from medaug.errors import OutputExistsError
from medaug.io import write_text, write_tsv
from medaug.sampling.samplers import Samples, Sampler


def label_token(label: str) -> str:
    """The diagnosis as it appears in synthetic participant labels and listings (alphanumeric)."""
    return "".join(ch for ch in label if ch.isalnum())


def synthetic_listing(out_dir: str | os.PathLike, label: str, seed: int) -> Path:
    """The TSV that :func:`write_synthetic` writes for one class and seed."""
    return Path(out_dir) / f"synthetic_{label_token(label)}_seed{seed}.tsv"


def write_synthetic(samples: Samples, out_dir: str | os.PathLike, *, label: str, model_dir: str | os.PathLike,
                    sampler: Sampler, seed: int, start_index: int = 1) -> pd.DataFrame:
    """Write every sampled image and its sidecar; returns (and writes) ``synthetic.tsv``."""
    model_dir = Path(model_dir)
    provenance = json.loads((model_dir / "provenance.json").read_text())
    affine = np.asarray(provenance.get("image_affine", np.eye(4)))
    dataset = DerivativeDataset(out_dir, "medaug-synthetic", description="synthetic images from medaug generators")
    clean = label_token(label)
    rows = []
    for offset, (image, latent) in enumerate(zip(samples.images, samples.latents)):
        participant = f"synth{clean}{start_index + offset:04d}"
        path = dataset.path(participant, None, desc="synthetic")
        if path.exists():
            raise OutputExistsError(f"{path} exists; write to another folder or use --start-index")
        dataset.write_image(path, image[0], affine, {
            "Synthetic": True, "Label": label, "Generator": str(model_dir.resolve()),
            "GeneratorModel": json.loads((model_dir / "config.json").read_text())["model"],
            "Sampler": sampler.config(), "Seed": seed, "SampleIndex": offset,
            "TrainingSetSHA256": provenance.get("training_set_sha256"),
            "Latent": [round(float(v), 6) for v in latent]})
        rows.append({"participant_id": f"sub-{participant}", "diagnosis": label, "synthetic": True, "path": str(path)})
    table = pd.DataFrame(rows)
    write_tsv(synthetic_listing(out_dir, label, seed), table)
    write_text(Path(out_dir) / ".bidsignore", "synthetic_*.tsv\n")  # the listing is not a BIDS file
    return table
