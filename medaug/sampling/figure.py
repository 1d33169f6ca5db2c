"""Figure of a 2D latent space (thesis Fig. 1.3): the log target density of the sampler in grey
scale, the training codes and the samples, next to decoded samples."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from medaug.errors import ConfigError  # noqa: E402
from medaug.io import atomic_write  # noqa: E402
from medaug.sampling.samplers import Sampler, Samples  # noqa: E402


def _shown(image: torch.Tensor) -> tuple[torch.Tensor, str]:
    """A 2D image as stored (rows, columns), or the axial middle slice of a RAS volume (A up)."""
    volume = image[0]
    if volume.ndim == 2:
        return volume, "upper"
    return volume[:, :, volume.shape[2] // 2].T, "lower"


def plot_latent_geometry(sampler: Sampler, samples: Samples, codes: torch.Tensor, png: str | os.PathLike,
                         resolution: int = 150, shown: int = 8) -> Path:
    """Save the figure; needs a 2D latent space and a sampler with a ``log_target`` (geometry-aware)."""
    if samples.latents.shape[1] != 2:
        raise ConfigError(f"the latent-space figure needs a 2D latent space, got {samples.latents.shape[1]}D")
    if not hasattr(sampler, "log_target"):
        raise ConfigError(f"the {sampler.name} sampler has no latent density to draw")
    points = torch.cat([codes, samples.latents])
    low, high = points.min(0).values, points.max(0).values
    margin = 0.15 * (high - low) + 1e-3
    axes = [torch.linspace(float(low[k] - margin[k]), float(high[k] + margin[k]), resolution) for k in range(2)]
    grid = torch.cartesian_prod(*axes).to(codes.dtype)
    density = torch.cat([sampler.log_target(part.to(sampler.device)).cpu() for part in grid.split(4096)]).view(resolution, resolution)

    figure = plt.figure(figsize=(4 + 1.2 * ((shown + 1) // 2), 4), constrained_layout=True)
    grid_spec = figure.add_gridspec(2, 2 + (shown + 1) // 2)
    latent_axis = figure.add_subplot(grid_spec[:, :2])
    extent = [float(axes[0][0]), float(axes[0][-1]), float(axes[1][0]), float(axes[1][-1])]
    latent_axis.imshow(density.T.numpy(), origin="lower", extent=extent, cmap="gray", aspect="auto")
    latent_axis.scatter(*codes.T.numpy(), s=8, c="tab:blue", label="training codes")
    latent_axis.scatter(*samples.latents.T.numpy(), s=8, c="tab:orange", label=f"{sampler.name} samples")
    latent_axis.legend(loc="upper right", fontsize=7)
    latent_axis.set_title("log target density (grey) in the latent space", fontsize=8)
    for index in range(min(shown, len(samples.images))):
        axis = figure.add_subplot(grid_spec[index % 2, 2 + index // 2])
        picture, origin = _shown(samples.images[index])
        axis.imshow(picture.numpy(), origin=origin, cmap="gray")
        axis.set_axis_off()
    path = atomic_write(png, lambda p: figure.savefig(p, dpi=120, format="png"))
    plt.close(figure)
    return path
