"""Preprocessing building blocks against references: known affines, analytic bias fields."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from medaug.preprocessing.bias import head_mask, n4_correct
from medaug.preprocessing.pipeline import T1LinearConfig
from medaug.preprocessing.registration import (
    RegistrationConfig, levels, linear_scales, normalized_cross_correlation, register_affine, resample_to_grid)
from medaug.preprocessing.sitk_image import from_sitk, ras_to_transform, to_sitk, transform_to_ras
from medaug.preprocessing.template import CLINICA_CROP_AFFINE, CLINICA_CROP_SHAPE, GridSpec

FAST = RegistrationConfig(rigid_shrink=(2, 1), rigid_sigmas_mm=(3.0, 0.0), affine_shrink=(2, 1),
                          affine_sigmas_mm=(3.0, 0.0), iterations=100, sampling_fraction=0.3)
OBLIQUE = np.array([[0.0, 0.0, -1.5, 80.0], [1.2, 0.1, 0.0, -100.0], [0.0, 1.3, 0.0, -60.0], [0, 0, 0, 1]])


def _known_affine(angles=(8.0, -5.0, 6.0), shift=(6.0, -4.0, 5.0), scale=(1.05, 0.97, 1.02)) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_euler("xyz", angles, degrees=True).as_matrix() @ np.diag(scale)
    matrix[:3, 3] = shift
    return matrix


def test_sitk_conversion_round_trips_and_maps_voxels_to_lps():
    voxels = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    image = to_sitk(voxels, OBLIQUE)
    back, affine = from_sitk(image)
    np.testing.assert_array_equal(back, voxels)
    np.testing.assert_allclose(affine, OBLIQUE, atol=1e-12)
    ras = OBLIQUE @ np.array([1, 2, 3, 1.0])
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((1, 2, 3)), [-ras[0], -ras[1], ras[2]], atol=1e-9)
    assert image[1, 2, 3] == pytest.approx(voxels[1, 2, 3])


def test_transform_conversion_matches_sitk_point_mapping():
    matrix = _known_affine()
    transform = ras_to_transform(matrix)
    point = np.array([10.0, -20.0, 30.0])
    lps = transform.TransformPoint((-point[0], -point[1], point[2]))
    np.testing.assert_allclose([-lps[0], -lps[1], lps[2]], (matrix @ np.r_[point, 1])[:3], atol=1e-9)
    centred = sitk.Euler3DTransform((5.0, 6.0, 7.0), 0.1, -0.2, 0.3, (1.0, 2.0, 3.0))
    ras = transform_to_ras(centred)
    lps = centred.TransformPoint((-point[0], -point[1], point[2]))
    np.testing.assert_allclose([-lps[0], -lps[1], lps[2]], (ras @ np.r_[point, 1])[:3], atol=1e-9)
    np.testing.assert_allclose(transform_to_ras(transform), matrix, atol=1e-12)


def test_resampling_onto_the_clinica_grid_with_identity_keeps_world_positions():
    grid = GridSpec(CLINICA_CROP_SHAPE, CLINICA_CROP_AFFINE)
    # a linear ramp in world x: resampling must reproduce x at every output voxel centre
    shape, affine = (60, 70, 65), np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = (-90.0, -125.0, -85.0)
    i = np.arange(shape[0], dtype=np.float32)
    ramp = np.broadcast_to((3.0 * i - 90.0)[:, None, None], shape).copy()
    out = resample_to_grid(to_sitk(ramp, affine), np.eye(4), grid)
    assert out.shape == CLINICA_CROP_SHAPE
    x = CLINICA_CROP_AFFINE[0, 3] + np.arange(CLINICA_CROP_SHAPE[0])
    np.testing.assert_allclose(out[:, 100, 90], x, atol=1e-3)


def test_levels_finer_than_the_image_are_skipped_but_the_coarsest_always_runs():
    assert levels((8, 4, 2), (4.0, 2.0, 1.0), 1.0, 4.0, "image") == ((8, 4), (4.0, 2.0))
    assert levels((4, 2, 1), (2.0, 1.0, 0.0), 1.0, 4.0, "image") == ((4,), (2.0,))
    assert levels((2, 1), (1.0, 0.0), 1.0, 6.0, "image") == ((2,), (1.0,))        # coarsest kept
    assert levels((4, 2, 1), (2.0, 1.0, 0.0), 1.0, 1.0, "image") == ((4, 2, 1), (2.0, 1.0, 0.0))  # 1 mm: all
    assert levels((4, 2, 1), (2.0, 1.0, 0.0), 1.0, 4.0, "template") == ((4, 2, 1), (2.0, 1.0, 0.0))


@pytest.mark.parametrize("config", [FAST, RegistrationConfig(
    rigid_shrink=(4, 2, 1), rigid_sigmas_mm=(6.0, 3.0, 0.0), affine_shrink=(2, 1), affine_sigmas_mm=(3.0, 0.0),
    iterations=100, sampling_fraction=0.3, learning_rate=1.0, finest_level="image")], ids=["template", "image"])
def test_registration_recovers_a_known_affine(small_template, config):
    truth = _known_affine()  # template mm → image mm
    template_image = to_sitk(small_template.voxels, small_template.affine)
    grid_affine = np.array([[-3.0, 0, 0, 110.0], [0, 3.0, 0, -140.0], [0, 0, 3.0, -90.0], [0, 0, 0, 1.0]])
    reference = to_sitk(np.zeros((75, 85, 75), np.float32), grid_affine)
    moving = sitk.Resample(template_image, reference, ras_to_transform(np.linalg.inv(truth)), sitk.sitkLinear, 0.0)
    moving = sitk.Cast(moving, sitk.sitkFloat32) * 800.0 + 20.0  # another scanner's intensity scale
    result = register_affine(moving, small_template, config)
    brain = np.argwhere(small_template.brain_mask)
    points = small_template.affine @ np.c_[brain, np.ones(len(brain))].T
    error = np.linalg.norm((result.template_to_image - truth) @ points, axis=0).mean()
    assert error < 1.0  # mm, at 3 mm voxels
    np.testing.assert_allclose(linear_scales(result.template_to_image), linear_scales(truth), atol=0.02)


def test_n4_removes_a_known_smooth_bias_field():
    shape = (48, 48, 48)
    coords = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    radius = np.linalg.norm(coords, axis=0)
    phantom = np.where(radius < 0.45, 100.0, np.where(radius < 0.8, 60.0, 0.0)).astype(np.float32)
    bias = np.exp(0.3 * coords[0] - 0.2 * coords[2]).astype(np.float32)
    image = to_sitk(phantom * bias, np.diag([4.0, 4.0, 4.0, 1.0]))
    corrected, field = n4_correct(image, shrink_factor=2, spline_distance_mm=100.0)
    out, _ = from_sitk(corrected)
    inner = radius < 0.4

    def cv(values):
        return values.std() / values.mean()

    assert cv(out[inner]) < 0.5 * cv((phantom * bias)[inner])
    estimated, _ = from_sitk(field)
    # the field is recovered up to a global constant
    ratio = (estimated / bias)[radius < 0.75]
    assert cv(ratio) < 0.03
    assert from_sitk(head_mask(image))[0][inner].all()


def test_n4_rejects_a_blank_image():
    with pytest.raises(ValueError, match="head mask is empty"):
        n4_correct(to_sitk(np.zeros((8, 8, 8), np.float32), np.eye(4)))


def test_ncc_is_one_for_affine_intensity_maps_and_zero_for_constants():
    a = np.random.default_rng(1).random((6, 6, 6))
    mask = np.ones(a.shape, bool)
    assert normalized_cross_correlation(a, 3 * a + 2, mask) == pytest.approx(1.0)
    assert normalized_cross_correlation(a, -a, mask) == pytest.approx(-1.0)
    assert normalized_cross_correlation(a, np.ones_like(a), mask) == 0.0


def test_config_round_trips_through_json():
    config = T1LinearConfig(size=(84, 104, 89), min_ncc=0.4, registration=RegistrationConfig(seed=3))
    again = T1LinearConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
