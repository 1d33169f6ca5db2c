"""Sample-quality measures of a synthetic pool against the generator's training images.

All distances are Euclidean in the stated feature space: the flattened image intensities in
[0, 1] (pixel / voxel space). Per pool, with S the synthetic images, R the training images,
H held-out real images of the same class and x̂ = decode(μ(x)) reconstructions:

- diversity = mean pairwise ‖sᵢ − sⱼ‖ / mean pairwise ‖rᵢ − rⱼ‖ (≈ 1 for a new sample of the class,
  ≈ 0 for one image repeated);
- coverage = fraction of training images that are the nearest neighbour of at least one sample,
  and max_nn_share = the largest fraction of samples sharing one nearest training image (held-out
  real images score it too: in 64 dimensions some training images are the nearest neighbour of
  many points, 27 % of 60 held-out digits share one of 30 training images);
- precision / recall (Kynkäänniemi et al. 2019): a sample is precise when it lies inside the k-NN
  ball of some training image; a training image is recalled when it lies inside the k-NN ball of
  some sample (k = 3);
- memorization: fraction of samples nearer to a training image than the ``quantile`` of the
  training leave-one-out nearest-neighbour distances, beside that fraction for H;
- copy test in reconstruction space: fraction of samples nearer to a training reconstruction than
  the ``quantile`` of the reconstructions' leave-one-out nearest-neighbour distances, beside that
  fraction for the reconstructions of H. Blur shortens pixel distances, so the pixel audit alone
  calls blurred copies novel; this test compares like with like.
"""

from __future__ import annotations

import torch

from medaug.compute import INFERENCE_BATCH

COLLAPSE_DIVERSITY, COLLAPSE_SHARE, MEMORIZATION_MARGIN = 0.5, 0.5, 0.10
QUALITY_IMAGES = 256  # samples and held-out images scored per pool (pairwise measures are quadratic)


def _flat(images) -> torch.Tensor:
    return torch.as_tensor(images).flatten(1).double()


def pairwise_distances(queries: torch.Tensor, references: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """‖qᵢ − rⱼ‖ (Q, R) in float64, queries in chunks."""
    queries, references = _flat(queries), _flat(references)
    return torch.cat([torch.cdist(part, references) for part in queries.split(chunk)])


def nearest(queries, references, *, leave_one_out: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance to and index of each query's nearest reference; ``leave_one_out``: queries are the references."""
    distances = pairwise_distances(queries, references)
    if leave_one_out:
        distances.fill_diagonal_(float("inf"))
    values, indices = distances.min(1)
    return values, indices


def mean_pairwise_distance(images) -> float:
    """Mean of ‖xᵢ − xⱼ‖ over pairs i < j."""
    flat = _flat(images)
    return float(torch.pdist(flat).mean()) if len(flat) > 1 else 0.0


def diversity(synthetic, training) -> float:
    """Mean pairwise distance of the samples over that of the training images."""
    reference = mean_pairwise_distance(training)
    return mean_pairwise_distance(synthetic) / reference if reference > 0 else float("nan")


def nearest_training_shares(synthetic, training) -> dict:
    """Coverage and the largest share of samples with one nearest training image."""
    _, index = nearest(synthetic, training)
    counts = torch.bincount(index, minlength=len(_flat(training)))
    return {"coverage": float((counts > 0).double().mean()), "max_nn_share": float(counts.max()) / len(index)}


def _knn_radius(points: torch.Tensor, k: int) -> torch.Tensor:
    distances = pairwise_distances(points, points)
    distances.fill_diagonal_(float("inf"))
    return distances.kthvalue(min(k, len(points) - 1), dim=1).values


def precision_recall(synthetic, training, k: int = 3) -> dict:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls; NaN where a set
    has a single image (it has no neighbour to draw a ball with)."""
    synthetic, training = _flat(synthetic), _flat(training)
    between = pairwise_distances(synthetic, training)  # (S, R)
    precision = (between <= _knn_radius(training, k)[None]).any(1).double().mean() if len(training) > 1 else torch.nan
    recall = (between <= _knn_radius(synthetic, k)[:, None]).any(0).double().mean() if len(synthetic) > 1 else torch.nan
    return {"precision": float(precision), "recall": float(recall)}


def fraction_below_quantile(queries, references, quantile: float, held_out=None) -> dict:
    """Fraction of queries (and of ``held_out``) nearer to a reference than the ``quantile`` of the
    references' leave-one-out nearest-neighbour distances."""
    reference_nn, _ = nearest(references, references, leave_one_out=True)
    threshold = float(torch.quantile(reference_nn, quantile))
    out = {"threshold": threshold, "fraction": float((nearest(queries, references)[0] < threshold).double().mean())}
    if held_out is not None and len(held_out):
        out["held_out_fraction"] = float((nearest(held_out, references)[0] < threshold).double().mean())
    return out


def sample_quality(synthetic, training, *, held_out=None, reconstructions=None, held_out_reconstructions=None,
                   quantile: float = 0.05, k: int = 3) -> dict:
    """Every measure of the module docstring for one pool (tensors (N, C, *spatial))."""
    memorized = fraction_below_quantile(synthetic, training, quantile, held_out)
    out = {"synthetic": len(synthetic), "training": len(training), "feature_space": "intensities",
           "diversity": diversity(synthetic, training), **nearest_training_shares(synthetic, training),
           **precision_recall(synthetic, training, k), "memorized_fraction": memorized["fraction"],
           "held_out_memorized_fraction": memorized.get("held_out_fraction", float("nan"))}
    if held_out is not None and len(held_out):  # what real images of the class score (hubness included)
        out.update(held_out_diversity=diversity(held_out, training),
                   held_out_max_nn_share=nearest_training_shares(held_out, training)["max_nn_share"])
    if reconstructions is not None and len(reconstructions) > 1:
        copies = fraction_below_quantile(synthetic, reconstructions, quantile, held_out_reconstructions)
        out.update(copy_fraction=copies["fraction"], held_out_copy_fraction=copies.get("held_out_fraction", float("nan")))
    return out


def quality_warnings(quality: dict) -> list[str]:
    """Warnings for a pool that looks collapsed (diversity < 0.5, or more than half the samples
    sharing one nearest training image) or memorized (flagged fraction more than 10 points above the
    held-out real images', in pixel or reconstruction space)."""
    warnings = []
    if quality["diversity"] < COLLAPSE_DIVERSITY:
        warnings.append(f"collapsed pool: diversity {quality['diversity']:.2f} < {COLLAPSE_DIVERSITY} "
                        "(samples are much more alike than the training images)")
    if quality["max_nn_share"] > COLLAPSE_SHARE:
        warnings.append(f"collapsed pool: {100 * quality['max_nn_share']:.0f}% of the samples share one nearest "
                        "training image")
    for key, space in (("memorized_fraction", "image"), ("copy_fraction", "reconstruction")):
        held_out = quality.get(f"held_out_{key}", float("nan"))
        reference = held_out if held_out == held_out else 0.0
        if key in quality and quality[key] > reference + MEMORIZATION_MARGIN:
            warnings.append(f"memorized pool: {100 * quality[key]:.0f}% of the samples are near-copies in "
                            f"{space} space, against {100 * reference:.0f}% of held-out real images")
    return warnings


@torch.no_grad()
def reconstruct(model, images: torch.Tensor, batch_size: int = INFERENCE_BATCH) -> torch.Tensor:
    """decode(μ_φ(x)) of every image, as float32 CPU tensors."""
    device = next(model.parameters()).device
    return torch.cat([model.decode(model.encoder(part.to(device))[0]).float().cpu()
                      for part in images.split(batch_size)])
