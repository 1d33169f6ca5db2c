"""Sample-quality measures of a synthetic pool against the generator's training images.

All distances are Euclidean in the stated feature space: the flattened image intensities in
[0, 1] (pixel / voxel space). Per pool, with S the synthetic images, R the training images and
x̂ = decode(μ(x)) their reconstructions; the reference of a new subject is R itself, leave one out
(each training image against the others), so that ``medaug generate``, the study and its report
use one definition and no held-out image:

- diversity = mean pairwise ‖sᵢ − sⱼ‖ / mean pairwise ‖rᵢ − rⱼ‖ (≈ 1 for a new sample of the class,
  ≈ 0 for one image repeated);
- coverage = fraction of training images that are the nearest neighbour of at least one sample,
  and max_nn_share = the largest fraction of samples sharing one nearest training image, beside
  real_max_nn_share, the same share for the training images leave one out (hubness: in 64
  dimensions some images are the nearest neighbour of many points);
- precision / recall (Kynkäänniemi et al. 2019): a sample is precise when it lies inside the k-NN
  ball of some training image; a training image is recalled when it lies inside the k-NN ball of
  some sample (k = 3);
- copies told apart from averages (:func:`copy_audit`): with τ the ``quantile`` of the training
  images' leave-one-out nearest distances and τ_typical the ``quantile`` of their median distances
  to the other training images, a sample within τ of a training image is a *copy* when it is near
  that one and far from the others (at most half as far from it as from the next, or within τ of
  it alone and not central); any other within τ of training images, or whose median distance to
  them is below τ_typical, an *average* (a blend or class mean: a mean is nearer to every image
  than real subjects are to each other, so an audit of nearest distances alone calls a collapsed
  pool "100 % copies"); any other *novel*. Per sample: the nearest and second-nearest training
  distances and the median one, beside the same for the real images leave one out
  (real_copy_fraction, real_average_fraction: what a new real subject scores, about 2 × quantile);
- the same in reconstruction space (samples against x̂, τ from the x̂'s leave-one-out distances):
  blur shortens pixel distances, so the pixel audit alone calls blurred copies novel.
"""

from __future__ import annotations

import torch

from medaug.compute import INFERENCE_BATCH

COLLAPSE_DIVERSITY, COLLAPSE_SHARE, MEMORIZATION_MARGIN = 0.5, 0.5, 0.10
QUALITY_IMAGES = 256  # samples scored per pool (pairwise measures are quadratic)


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


def _neighbours(distances: torch.Tensor, threshold: float, leave_one_out: bool = False) -> dict[str, torch.Tensor]:
    """Per row of (Q, R) distances: nearest and second-nearest distance, the nearest's index, the
    number of references nearer than ``threshold`` and the median distance to the references
    (``leave_one_out``: the diagonal is the row's own image and is left out)."""
    if leave_one_out:
        distances = distances.clone()
        distances.fill_diagonal_(torch.inf)
    ordered, order = distances.sort(1)
    finite = ordered[:, :ordered.shape[1] - leave_one_out]
    return {"nearest": ordered[:, 0], "index": order[:, 0],
            "second": ordered[:, 1] if ordered.shape[1] > 1 else torch.full_like(ordered[:, 0], torch.inf),
            "near": (distances < threshold).sum(1), "typical": torch.quantile(finite, 0.5, dim=1)}


def leave_one_out(references: torch.Tensor, quantile: float) -> tuple[dict[str, torch.Tensor], float, float]:
    """The references against each other (an image is not its own neighbour): :func:`_neighbours`
    of each, τ = the ``quantile`` of their nearest distances and τ_typical = the ``quantile`` of
    their median distances to the others."""
    if len(references) < 2:
        raise ValueError(f"a leave-one-out reference needs at least 2 images, got {len(references)}")
    distances = pairwise_distances(references, references)
    nearest_loo = distances.fill_diagonal_(torch.inf).min(1).values
    threshold = float(torch.quantile(nearest_loo, quantile))
    real = _neighbours(distances, threshold, leave_one_out=True)
    return real, threshold, float(torch.quantile(real["typical"], quantile))


KINDS = ("novel", "copy", "average")


def _kinds(found: dict[str, torch.Tensor], typical_threshold: float) -> torch.Tensor:
    """0 novel; 1 copy: within τ of a training image and at most half as far from it as from the
    next one, or within τ of exactly one and not nearer to the training set as a whole than real
    images are; 2 average: the others within τ of one or more, or with a median distance to the
    training images below τ_typical (a blend or a class mean, which is near all of them)."""
    alone = (found["near"] == 1) & (found["typical"] >= typical_threshold)
    copy = (found["near"] >= 1) & ((2 * found["nearest"] <= found["second"]) | alone)
    average = ~copy & ((found["near"] >= 1) | (found["typical"] < typical_threshold))
    return torch.where(copy, 1, torch.where(average, 2, 0))


def _median(values: torch.Tensor) -> float:
    """The median, halfway between the middle values of an even count (inf where one is infinite)."""
    return float(torch.quantile(values, 0.5)) if torch.isfinite(values).all() else float(values.sort().values[len(values) // 2])


def copy_audit(queries, references: torch.Tensor, quantile: float = 0.05, *, chunk: int = 64) -> dict:
    """Copies told apart from averages (module docstring): τ = the ``quantile`` of the references'
    leave-one-out nearest distances, τ_typical that of their median distances to the others; each
    query's nearest and second-nearest reference distances, how many references lie within τ and
    its kind. ``queries``: a tensor or an iterable of batches (a pool streamed from disk). Returns
    the per-query ``samples`` (a dict of arrays) and the fractions of each kind for the queries and
    for the references themselves (leave one out)."""
    real, threshold, typical_threshold = leave_one_out(references, quantile)
    flat = _flat(references)
    parts = [_neighbours(torch.cdist(_flat(batch), flat), threshold)
             for batch in (queries.split(chunk) if torch.is_tensor(queries) else queries)]
    found = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
    kinds, real_kinds = _kinds(found, typical_threshold), _kinds(real, typical_threshold)
    return {"quantile": quantile, "threshold": threshold, "typical_threshold": typical_threshold,
            **{f"{kind}_fraction": float((kinds == k).double().mean()) for k, kind in enumerate(KINDS)},
            **{f"real_{kind}_fraction": float((real_kinds == k).double().mean()) for k, kind in enumerate(KINDS) if k},
            **{f"{prefix}{name}_distance_median": _median(values[key])
               for prefix, values in (("", found), ("real_", real))
               for name, key in (("nn", "nearest"), ("second_nn", "second"), ("typical", "typical"))},
            "samples": {"nearest_training": found["index"].numpy(), "nearest_distance": found["nearest"].numpy(),
                        "second_distance": found["second"].numpy(), "training_within_threshold": found["near"].numpy(),
                        "median_distance": found["typical"].numpy(), "kind": [KINDS[k] for k in kinds.tolist()]}}


def novel(images: torch.Tensor, references: torch.Tensor, quantile: float) -> tuple[torch.Tensor, float]:
    """Which ``images`` lie no nearer to a reference than the ``quantile`` of the references'
    leave-one-out nearest distances (the novelty filter), and that threshold."""
    threshold = leave_one_out(references, quantile)[1]
    return pairwise_distances(images, references).min(1).values >= threshold, threshold


def sample_quality(synthetic, training, *, reconstructions=None, quantile: float = 0.05, k: int = 3) -> dict:
    """Every measure of the module docstring for one pool (tensors (N, C, *spatial)); the per-sample
    copy audit is under ``samples``."""
    audit = copy_audit(synthetic, training, quantile)
    real_index = leave_one_out(training, quantile)[0]["index"]
    out = {"synthetic": len(synthetic), "training": len(training), "feature_space": "intensities",
           "diversity": diversity(synthetic, training), **nearest_training_shares(synthetic, training),
           "real_max_nn_share": float(torch.bincount(real_index).max()) / len(real_index),
           **precision_recall(synthetic, training, k), **audit}
    if reconstructions is not None and len(reconstructions) > 1:
        space = copy_audit(synthetic, reconstructions, quantile)
        out.update({f"reconstruction_{key}": space[key] for key in
                    ("copy_fraction", "average_fraction", "real_copy_fraction", "real_average_fraction")})
    return out


def quality_warnings(quality: dict) -> list[str]:
    """Warnings for a pool that looks collapsed (diversity < 0.5, or more than half the samples
    sharing one nearest training image), averaged (samples within τ of several training images) or
    memorized (within τ of exactly one), more than 10 points above the real images' own fractions,
    in pixel or reconstruction space."""
    warnings = []
    if quality["diversity"] < COLLAPSE_DIVERSITY:
        warnings.append(f"collapsed pool: diversity {quality['diversity']:.2f} < {COLLAPSE_DIVERSITY} "
                        "(samples are much more alike than the training images)")
    if quality["max_nn_share"] > max(COLLAPSE_SHARE, quality.get("real_max_nn_share", 0.0)):
        warnings.append(f"collapsed pool: {100 * quality['max_nn_share']:.0f}% of the samples share one nearest "
                        "training image")
    for prefix, space in (("", "image"), ("reconstruction_", "reconstruction")):
        for kind, meaning in (("average", "averages (blends or a class mean)"), ("copy", "near-copies")):
            key = f"{prefix}{kind}_fraction"
            if key not in quality:
                continue
            reference = quality.get(f"{prefix}real_{kind}_fraction", 0.0)
            if quality[key] > reference + MEMORIZATION_MARGIN:
                warnings.append(f"{'averaged' if kind == 'average' else 'memorized'} pool: "
                                f"{100 * quality[key]:.0f}% of the samples are {meaning} in {space} space, against "
                                f"{100 * reference:.0f}% of the real images (leave one out)")
    return warnings


@torch.no_grad()
def reconstruct(model, images: torch.Tensor, batch_size: int = INFERENCE_BATCH) -> torch.Tensor:
    """decode(μ_φ(x)) of every image, as float32 CPU tensors."""
    device = next(model.parameters()).device
    return torch.cat([model.decode(model.encoder(part.to(device))[0]).float().cpu()
                      for part in images.split(batch_size)])
