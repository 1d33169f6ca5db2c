"""Carry-forward and linear fill against hand-computed sequences."""

import torch

from medaug.longitudinal.baselines import carry_forward, linear_fill


def test_carry_forward_and_linear_fill_by_hand():
    codes = torch.tensor([[0.0, 9.0, 2.0, 9.0, 9.0], [9.0, 1.0, 9.0, 9.0, 4.0]])[..., None]
    mask = torch.tensor([[True, False, True, False, False], [False, True, False, False, True]])
    assert carry_forward(codes, mask)[..., 0].tolist() == [[0, 0, 2, 2, 2], [1, 1, 1, 1, 4]]
    assert linear_fill(codes, mask)[..., 0].tolist() == [[0, 1, 2, 3, 4], [1, 1, 2, 3, 4]]


def test_linear_fill_is_exact_on_lines_and_keeps_observations():
    generator = torch.Generator().manual_seed(0)
    start, slope = torch.randn(6, 1, 3, generator=generator), torch.randn(6, 1, 3, generator=generator)
    lines = start + slope * torch.arange(7.0)[None, :, None]
    mask = torch.rand(6, 7, generator=generator) > 0.5
    mask[:, 0] = mask[:, 3] = True  # two observations determine each line (and nothing precedes the first)
    assert torch.allclose(linear_fill(lines, mask), lines, atol=1e-5)
    noisy = lines + torch.randn(lines.shape, generator=generator)
    assert torch.equal(linear_fill(noisy, mask)[mask], noisy[mask])
