"""Conversions between RAS voxel arrays + affines (nibabel / MONAI) and SimpleITK images (LPS).

A voxel array indexed (i, j, k) with a RAS affine A is the SimpleITK image whose physical
(LPS) point of index (i, j, k) is F·A·(i, j, k, 1) with F = diag(−1, −1, 1, 1).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def to_sitk(voxels: np.ndarray | torch.Tensor, affine: np.ndarray | torch.Tensor) -> sitk.Image:
    """A float32 SimpleITK image from a 3D array (i, j, k) and its RAS affine."""
    array = voxels.detach().cpu().numpy() if isinstance(voxels, torch.Tensor) else np.asarray(voxels)
    lps = RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.astype(np.float32).transpose(2, 1, 0)))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps[:3, :3] / spacing).flatten().tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    return image


def from_sitk(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """The (i, j, k) float32 array and RAS affine of a SimpleITK image."""
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0).astype(np.float32)
    return np.ascontiguousarray(array), RAS_TO_LPS @ lps


def transform_to_ras(transform: sitk.Transform) -> np.ndarray:
    """4×4 RAS matrix of a SimpleITK affine-family transform (x ↦ A(x − c) + c + t in LPS)."""
    matrix = np.asarray(transform.GetMatrix()).reshape(3, 3)
    centre = np.asarray(transform.GetCenter())
    lps = np.eye(4)
    lps[:3, :3] = matrix
    lps[:3, 3] = np.asarray(transform.GetTranslation()) + centre - matrix @ centre
    return RAS_TO_LPS @ lps @ RAS_TO_LPS


def ras_to_transform(matrix: np.ndarray) -> sitk.AffineTransform:
    """The SimpleITK affine transform (LPS) of a 4×4 RAS matrix."""
    lps = RAS_TO_LPS @ np.asarray(matrix, dtype=np.float64) @ RAS_TO_LPS
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(lps[:3, :3].flatten().tolist())
    transform.SetTranslation(lps[:3, 3].tolist())
    return transform
