"""The one path that draws, writes and scores a pool of synthetic images (:func:`write_pool`), for
``medaug generate`` and the study alike: the same novelty filter, the same quality measures against
the generator's training images (:mod:`medaug.sampling.quality`), named as its provenance records
them (:func:`image_name`), and the same files beside the pool's listing ``synthetic_<label>_seed<seed>.tsv``:

- ``.quality.json``: the pool's measures and warnings (first :data:`QUALITY_IMAGES` images);
- ``.nearest.tsv``: per scored sample, its nearest and second-nearest training image distances, how
  many training images lie within the copy threshold τ, its median distance to the training images
  and its kind (novel, copy, average);
- ``.chains.json``: the sampler's chain diagnostics and the generator's posterior check.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from medaug.compute import INFERENCE_BATCH
from medaug.errors import ConfigError
from medaug.io import write_json, write_tsv
from medaug.provenance import GeneratorProvenance
from medaug.sampling.quality import QUALITY_IMAGES, novel, quality_warnings, reconstruct, sample_quality
from medaug.sampling.sampler import Sampler
from medaug.sampling.synthetic_dataset import synthetic_listing, write_synthetic

logger = logging.getLogger(__name__)

NOVELTY_ROUNDS = 20  # draws of `count` codes at most before the novelty filter gives up


def score_files(out_dir: Path, label: str, seed: int) -> dict[str, Path]:
    """The ``quality``, ``nearest`` and ``chains`` files of a pool (module docstring)."""
    listing = synthetic_listing(out_dir, label, seed)
    return {"quality": listing.with_suffix(".quality.json"), "nearest": listing.with_suffix(".nearest.tsv"),
            "chains": listing.with_suffix(".chains.json")}


def novelty_seed(seed: int, attempt: int) -> int:
    """The seed of the novelty filter's ``attempt``-th extra draw (0: the pool's own seed)."""
    return (seed + 7919 * attempt) % 2**32


def draw_pool(sampler: Sampler, count: int, *, seed: int, train: torch.Tensor,
              novelty_quantile: float | None = None,
              first: tuple[torch.Tensor, dict] | None = None) -> tuple[torch.Tensor, dict]:
    """``count`` latent codes and the chains' diagnostics. With ``novelty_quantile``, samples nearer
    to a training image than that quantile of the training images' leave-one-out nearest distances
    are dropped and more are drawn (seeds :func:`novelty_seed`); ``diagnostics["novelty"]`` counts
    what was drawn and dropped. Without it, exactly the codes of ``sampler.draw(count, seed=seed)``,
    or ``first``, that draw made already (with other classes' chains, ``classes_together``)."""
    latents, diagnostics = first if first is not None else sampler.draw(count, seed=seed)
    if novelty_quantile is None:
        return latents, diagnostics
    kept, drawn, threshold = [], 0, float("nan")
    for attempt in range(NOVELTY_ROUNDS):
        if attempt:
            latents, _ = sampler.draw(count, seed=novelty_seed(seed, attempt))
        mask, threshold = novel(torch.cat(list(sampler.decode(latents))), train.cpu(), novelty_quantile)
        kept.append(latents[mask.to(latents.device)])
        drawn += len(latents)
        if sum(len(k) for k in kept) >= count:
            break
    found = sum(len(k) for k in kept)
    if found < count:
        raise ConfigError(f"{sampler.name} sampler: only {found} of {drawn} samples were farther from every training "
                          f"image than the {novelty_quantile:g} quantile of the real leave-one-out distances "
                          f"({threshold:.3g}), fewer than the {count} asked for: lower novelty_quantile, or train "
                          "a generator that does not copy")
    diagnostics["novelty"] = {"quantile": novelty_quantile, "threshold": threshold, "drawn": drawn,
                              "dropped": drawn - found}
    logger.info("%s: novelty filter dropped %d of %d samples", sampler.name, drawn - found, drawn)
    return torch.cat(kept)[:count], diagnostics


@dataclass(frozen=True)
class WrittenPool:
    """What :func:`write_pool` wrote: the listing table, the latent codes (CPU), the chains'
    diagnostics and the quality record with every warning (the chains' included)."""

    table: pd.DataFrame
    latents: torch.Tensor
    diagnostics: dict
    quality: dict


def image_name(path: str | os.PathLike) -> str:
    """A training image's name in the copy audit: its BIDS subject and session (``sub-01_ses-M000``),
    else its file name."""
    name = Path(path).name
    return "_".join(part for part in name.split("_") if part.startswith(("sub-", "ses-"))) or name


def write_pool(sampler: Sampler, drawn: tuple[torch.Tensor, dict], out_dir: str | os.PathLike, *,
               model_dir: str | os.PathLike, train: torch.Tensor, seed: int, quantile: float, start_index: int = 1,
               batch_size: int = INFERENCE_BATCH, stack: bool = False) -> WrittenPool:
    """Write the images of the codes and diagnostics that :func:`draw_pool` ``drew`` with ``seed``
    as synthetic (:func:`~medaug.sampling.synthetic_dataset.write_synthetic`; ``stack``: also the float16
    stack studies stream from), then score them against ``train``, the generator's training images,
    under the names its provenance records (:func:`score_pool`)."""
    provenance = GeneratorProvenance.read(model_dir)
    latents, diagnostics = drawn[0].cpu(), drawn[1]
    table = write_synthetic(latents, sampler.decode(latents, batch_size), out_dir, label=provenance.label,
                            model_dir=model_dir, sampler=sampler, seed=seed, start_index=start_index, pool=stack,
                            diagnostics=diagnostics)
    quality = score_pool(sampler, latents, train, Path(out_dir), label=provenance.label, seed=seed, quantile=quantile,
                         participants=list(table["participant_id"]),
                         training_names=[image_name(path) for path in provenance.train_images], diagnostics=diagnostics)
    return WrittenPool(table, latents, diagnostics, quality)


def score_pool(sampler: Sampler, latents: torch.Tensor, train: torch.Tensor, out_dir: Path, *, label: str,
               seed: int, quantile: float, participants: list[str], training_names: list[str],
               diagnostics: dict) -> dict:
    """Score the first :data:`QUALITY_IMAGES` images of a written pool against the generator's
    ``train`` images and write the three files of the module docstring. ``participants``: the pool's
    participant ids in order; ``training_names``: the training images' names. Returns the quality
    with its warnings (the chains' warnings included)."""
    shown = latents[:QUALITY_IMAGES]
    images = torch.cat(list(sampler.decode(shown)))
    quality = sample_quality(images, train.cpu(), reconstructions=reconstruct(sampler.model, train),
                             quantile=quantile)
    samples = quality.pop("samples")
    if "novelty" in diagnostics:
        quality.update({f"novelty_{key}": value for key, value in diagnostics["novelty"].items()})
    quality["warnings"] = quality_warnings(quality)
    files = score_files(out_dir, label, seed)
    write_tsv(files["nearest"], pd.DataFrame({
        "participant_id": participants[:len(shown)],
        "nearest_training": [training_names[i] for i in samples["nearest_training"]],
        "nearest_distance": samples["nearest_distance"], "second_distance": samples["second_distance"],
        "training_within_threshold": samples["training_within_threshold"], "median_distance": samples["median_distance"],
        "kind": samples["kind"]}).round(4))
    write_json(files["chains"], {"chains": diagnostics, "posterior": sampler.posterior})
    write_json(files["quality"], quality)
    return {**quality, "warnings": quality["warnings"] + diagnostics.get("warnings", [])}
