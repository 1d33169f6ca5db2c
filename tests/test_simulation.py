import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.stats import kstest, rayleigh

from medaug.simulation.primitives import (
    acquisition_grid,
    exponentiate_velocity,
    grid_points,
    radial_expansion,
    random_velocity_field,
    rician_noise,
    rotation_matrix,
    sample_volume,
)


def test_sample_volume_matches_scipy_trilinear_under_an_oblique_affine():
    rng = np.random.default_rng(0)
    volume = rng.random((9, 11, 7)).astype(np.float32)
    affine = np.eye(4)
    affine[:3, :3] = rotation_matrix(np.array([12.0, -7.0, 30.0])) @ np.diag([1.5, 2.0, 2.5])
    affine[:3, 3] = [-4.0, 3.0, 1.0]
    voxels = rng.uniform(0, 1, (200, 3)) * (np.array(volume.shape) - 1)
    world = voxels @ affine[:3, :3].T + affine[:3, 3]
    ours = sample_volume(torch.from_numpy(volume)[None], affine, torch.as_tensor(world, dtype=torch.float32))
    reference = ndimage.map_coordinates(volume, voxels.T, order=1)
    np.testing.assert_allclose(ours[:, 0].numpy(), reference, atol=2e-5)


def test_grid_points_applies_the_affine():
    affine = np.array([[0, 0, -2.0, 10], [3.0, 0, 0, -5], [0, 1.0, 0, 2], [0, 0, 0, 1]])
    points = grid_points((2, 3, 4), affine).view(2, 3, 4, 3)
    np.testing.assert_allclose(points[1, 2, 3].numpy(), affine[:3, :3] @ [1, 2, 3] + affine[:3, 3])


def test_constant_velocity_exponentiates_to_the_same_translation():
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    velocity = np.zeros((3, 6, 6, 6), np.float32)
    velocity[0], velocity[2] = 1.5, -0.5
    displacement = exponentiate_velocity(velocity, affine)
    np.testing.assert_allclose(displacement.numpy(), velocity, atol=1e-5)


def test_exponentiated_field_is_inverted_by_the_negative_velocity():
    """exp(v) ∘ exp(−v) = id: the simulated deformation is invertible."""
    rng = np.random.default_rng(1)
    affine = np.diag([8.0, 8.0, 8.0, 1.0])
    velocity = random_velocity_field(rng, (16, 16, 16), smoothing_voxels=2.0, rms_mm=3.0)
    forward = exponentiate_velocity(velocity, affine)
    backward = exponentiate_velocity(-velocity, affine)
    points = grid_points((16, 16, 16), affine)[::7]
    inner = points + sample_volume(backward, affine, points, "border")
    round_trip = inner + sample_volume(forward, affine, inner, "border")
    interior = ((points > 24) & (points < 96)).all(dim=1)
    error = (round_trip - points)[interior].norm(dim=1)
    assert error.max() < 0.3 and error.mean() < 0.1  # mm, for an RMS displacement of 3 mm
    assert forward.norm(dim=0).mean() > 1.0


def test_radial_expansion_is_invertible_and_enlarges_the_centre():
    centre, spread = np.array([1.0, -2.0, 3.0]), np.array([5.0, 8.0, 4.0])
    points = (torch.randn(500, 3, dtype=torch.float64) * 10 + torch.tensor(centre)).requires_grad_(True)
    for k in (0.3, 0.9):
        mapped = radial_expansion(points.clone(), centre, spread, k)
        jacobian = torch.stack([torch.autograd.grad(mapped[:, i].sum(), points, retain_graph=True)[0]
                                for i in range(3)], dim=1)
        assert torch.linalg.det(jacobian).min() > 0
    # a point near the centre is pulled towards it, by (1 − k) at the centre itself
    near = torch.tensor(np.array([centre + [0.1, 0.0, 0.0]]))
    assert torch.allclose(radial_expansion(near, centre, spread, 0.5) - torch.tensor(centre),
                          torch.tensor([[0.1 * (1 - 0.5 * np.exp(-0.5 * (0.1 / 5) ** 2)), 0.0, 0.0]], dtype=near.dtype),
                          atol=1e-6)
    with pytest.raises(ValueError):
        radial_expansion(near, centre, spread, 1.0)


@pytest.mark.parametrize("code", ["RAS", "LAS", "PIR", "LPI", "ASL"])
def test_acquisition_grid_has_the_requested_orientation_and_is_centred(code):
    shape, affine = acquisition_grid(code, 2.0, (100.0, 120.0, 80.0))
    assert "".join(nib.aff2axcodes(affine)) == code
    world_extent = np.abs(affine[:3, :3] @ np.array(shape))
    np.testing.assert_allclose(sorted(world_extent), sorted([100.0, 120.0, 80.0]))
    centre = affine[:3, :3] @ ((np.array(shape) - 1) / 2) + affine[:3, 3]
    np.testing.assert_allclose(centre, 0.0, atol=1e-9)
    with pytest.raises(ValueError):
        acquisition_grid("RRS", 2.0, (1.0, 1.0, 1.0))


def test_rotation_matrix_is_a_rotation():
    r = rotation_matrix(np.array([10.0, -5.0, 7.0]))
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_rician_noise_on_zero_signal_is_rayleigh():
    rng = np.random.default_rng(3)
    samples = rician_noise(rng, torch.zeros(20000), sigma=2.0).numpy()
    assert kstest(samples, rayleigh(scale=2.0).cdf).pvalue > 0.01
