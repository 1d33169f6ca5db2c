"""Pure, batched tensor functions that simulate anatomy and MRI acquisition.

Used by :mod:`medaug.simulation.example_cohort`. Coordinates are world millimetres (RAS+), points are
``(N, 3)`` float tensors, volumes are ``(C, X, Y, Z)`` tensors on axis-aligned grids described by
a 4×4 voxel-to-world affine.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

_AXIS_CODES = {"R": (0, 1.0), "L": (0, -1.0), "A": (1, 1.0), "P": (1, -1.0), "S": (2, 1.0), "I": (2, -1.0)}


def sample_volume(volume: torch.Tensor, affine: np.ndarray, points: torch.Tensor,
                  padding_mode: str = "zeros") -> torch.Tensor:
    """Trilinear values of a ``(C, X, Y, Z)`` volume at world ``points`` ``(N, 3)`` → ``(N, C)``.

    ``affine`` maps voxel indices of ``volume`` to world mm (any orientation). World → voxel →
    grid_sample's [−1, 1] coordinates (in (k, j, i) order) is folded into one affine map.
    """
    sizes = np.array(volume.shape[1:], dtype=float)
    to_unit = np.diag(np.append(2.0 / (sizes - 1), 1.0))
    to_unit[:3, 3] = -1.0
    world_to_grid = (to_unit @ np.linalg.inv(affine))[[2, 1, 0]]
    matrix = torch.as_tensor(world_to_grid, dtype=points.dtype)
    grid = torch.addmm(matrix[:, 3], points, matrix[:, :3].T).view(1, -1, 1, 1, 3)
    values = F.grid_sample(volume[None], grid, mode="bilinear", padding_mode=padding_mode,
                           align_corners=True)
    return values.view(volume.shape[0], -1).T


def grid_points(shape: tuple[int, int, int], affine: np.ndarray) -> torch.Tensor:
    """World coordinates of every voxel of a grid, ``(X*Y*Z, 3)`` float32, C order."""
    axes = [torch.arange(n, dtype=torch.float32) for n in shape]
    voxels = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).view(-1, 3)
    a = torch.as_tensor(affine, dtype=torch.float32)
    return voxels @ a[:3, :3].T + a[:3, 3]


def random_velocity_field(rng: np.random.Generator, shape: tuple[int, int, int],
                          smoothing_voxels: float, rms_mm: float) -> np.ndarray:
    """Smooth random stationary velocity field ``(3, X, Y, Z)`` in mm with the given RMS norm."""
    noise = rng.standard_normal((3, *shape))
    field = np.stack([ndimage.gaussian_filter(c, smoothing_voxels, mode="nearest") for c in noise])
    rms = np.sqrt((field**2).sum(axis=0).mean())
    return (field * (rms_mm / rms)).astype(np.float32)


def exponentiate_velocity(velocity: np.ndarray, affine: np.ndarray, squarings: int = 6) -> torch.Tensor:
    """Displacement field of the diffeomorphism exp(v) by scaling and squaring.

    u₀ = v / 2ⁿ, then n times u ← u + u ∘ (id + u); the result is invertible for a smooth v.
    Returns ``(3, X, Y, Z)`` displacements in mm on the grid of ``velocity``.
    """
    displacement = torch.as_tensor(velocity) / 2**squarings
    points = grid_points(displacement.shape[1:], affine)
    for _ in range(squarings):
        flat = displacement.view(3, -1).T
        displacement = displacement + sample_volume(displacement, affine, points + flat,
                                                    padding_mode="border").T.view_as(displacement)
    return displacement


def radial_expansion(points: torch.Tensor, centre: np.ndarray, spread: np.ndarray,
                     strength: float) -> torch.Tensor:
    """Pull-back map that enlarges the region around ``centre``.

    Φ(p) = c + (p − c)(1 − k g(p)), g(p) = exp(−½‖(p − c)/σ‖²). Along each ray in σ-scaled
    coordinates r ↦ r(1 − k e^{−r²/2}) is increasing for 0 ≤ k < 1, so Φ is invertible; sampling
    an image at Φ(p) magnifies the structure at ``c`` by about 1/(1 − k) per axis.
    """
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"expansion strength must be in [0, 1), got {strength}")
    c = torch.as_tensor(centre, dtype=points.dtype)
    sigma = torch.as_tensor(spread, dtype=points.dtype)
    offset = points - c
    g = torch.exp(-0.5 * (offset / sigma).square().sum(dim=-1, keepdim=True))
    return c + offset * (1.0 - strength * g)


def rotation_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """R = Rz · Ry · Rx for rotations (degrees) about the x, y and z axes."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def acquisition_grid(orientation: str, spacing_mm: float,
                     field_of_view_mm: tuple[float, float, float]) -> tuple[tuple[int, int, int], np.ndarray]:
    """Voxel grid of a scan centred on the scanner origin, written in a given orientation.

    ``orientation`` is a nibabel-style axis code such as ``"LAS"`` or ``"PIR"``: the world direction
    each voxel axis points to. ``field_of_view_mm`` is given along world (x, y, z).
    Returns the grid shape and its voxel-to-scanner affine.
    """
    if sorted(_AXIS_CODES[c][0] for c in orientation) != [0, 1, 2]:
        raise ValueError(f"orientation {orientation!r} must name each of the x, y, z axes once")
    directions = np.zeros((3, 3))
    shape = []
    for voxel_axis, code in enumerate(orientation):
        world_axis, sign = _AXIS_CODES[code]
        directions[world_axis, voxel_axis] = sign
        shape.append(int(round(field_of_view_mm[world_axis] / spacing_mm)))
    affine = np.eye(4)
    affine[:3, :3] = directions * spacing_mm
    affine[:3, 3] = -affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    return tuple(shape), affine


def smooth_bias_field(rng: np.random.Generator, shape: tuple[int, int, int], log_std: float,
                      control_points: int = 4) -> torch.Tensor:
    """Multiplicative bias field exp(b), b trilinear over a coarse random control grid."""
    coarse = torch.as_tensor(rng.normal(0.0, log_std, (1, 1) + (control_points,) * 3), dtype=torch.float32)
    log_bias = F.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)
    return torch.exp(log_bias[0, 0])


def rician_noise(rng: np.random.Generator, signal: torch.Tensor, sigma: float) -> torch.Tensor:
    """Magnitude of a complex signal with i.i.d. Gaussian noise on both channels: √((s+n₁)² + n₂²)."""
    noise = torch.as_tensor(rng.standard_normal((2, *signal.shape), dtype=np.float32)) * sigma
    return torch.sqrt((signal + noise[0]) ** 2 + noise[1] ** 2)


def resample_to_template(image: nib.Nifti1Image, scanner_to_template: np.ndarray,
                         shape: tuple[int, int, int], template_affine: np.ndarray) -> np.ndarray:
    """Resample a scan onto a template grid through a scanner → template transform (trilinear)."""
    template_to_image_voxels = np.linalg.inv(image.affine) @ np.linalg.inv(scanner_to_template)
    points = grid_points(shape, template_affine)
    volume = torch.as_tensor(np.asarray(image.dataobj, dtype=np.float32))[None]
    return sample_volume(volume, np.linalg.inv(template_to_image_voxels), points).view(shape).numpy()
