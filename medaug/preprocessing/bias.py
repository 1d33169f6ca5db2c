"""N4 bias-field correction (Tustison et al., 2010) with an Otsu head mask, SimpleITK.

The B-spline mesh has ⌈extent / distance⌉ spans per axis (Clinica: 600 mm, i.e. one span for a
head), fitted on an image shrunk by ``shrink_factor``; the field is then evaluated at full
resolution and divided out: I_corrected = I / exp(log b).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

SPLINE_ORDER = 3


def head_mask(image: sitk.Image) -> sitk.Image:
    """Largest connected component above the Otsu threshold, holes filled (uint8 0/1)."""
    foreground = sitk.OtsuThreshold(image, 0, 1, 128)
    components = sitk.RelabelComponent(sitk.ConnectedComponent(foreground), sortByObjectSize=True)
    largest = sitk.Equal(components, 1)
    return sitk.Cast(sitk.BinaryFillhole(largest), sitk.sitkUInt8)


def n4_correct(image: sitk.Image, *, shrink_factor: int = 4, spline_distance_mm: float = 600.0,
               iterations: Sequence[int] = (50, 50, 50, 50), convergence: float = 1e-7,
               mask: sitk.Image | None = None) -> tuple[sitk.Image, sitk.Image]:
    """Bias-corrected image and the multiplicative bias field b (same grid as ``image``)."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    mask = head_mask(image) if mask is None else mask
    if not np.any(sitk.GetArrayViewFromImage(mask)):
        raise ValueError("the Otsu head mask is empty (blank image?)")
    shrink = [shrink_factor] * 3
    small, small_mask = sitk.Shrink(image, shrink), sitk.Shrink(mask, shrink)
    extent = [n * s for n, s in zip(image.GetSize(), image.GetSpacing())]
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetSplineOrder(SPLINE_ORDER)
    corrector.SetNumberOfControlPoints([max(1, math.ceil(e / spline_distance_mm)) + SPLINE_ORDER for e in extent])
    corrector.SetMaximumNumberOfIterations(list(iterations))
    corrector.SetConvergenceThreshold(convergence)
    corrector.Execute(small, small_mask)
    bias = sitk.Exp(corrector.GetLogBiasFieldAsImage(image))
    return sitk.Divide(image, bias), bias
