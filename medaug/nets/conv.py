"""Convolutional encoder / decoder for 2D or 3D images of any size, from MONAI ``Convolution`` blocks.

Each block halves (encoder) or doubles (decoder) the grid with stride-2 kernels, batch norm and
ReLU; the decoder's output is cropped to the exact input size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn


def _downsampled(shape: Sequence[int], blocks: int) -> tuple[int, ...]:
    for _ in range(blocks):
        shape = [(s + 1) // 2 for s in shape]  # kernel 3, stride 2, padding 1
    return tuple(shape)


def conv_body(input_shape: Sequence[int], channels: Sequence[int]) -> tuple[nn.Sequential, int]:
    """Stride-2 convolution blocks then flatten; returns the body and its number of output features."""
    dims = len(input_shape) - 1
    layers, previous = [], input_shape[0]
    for width in channels:
        layers.append(Convolution(dims, previous, width, strides=2, kernel_size=3, norm="BATCH", act="RELU"))
        previous = width
    features = channels[-1] * math.prod(_downsampled(input_shape[1:], len(channels)))
    return nn.Sequential(*layers, nn.Flatten()), features


class ConvEncoder(nn.Module):
    """x (C, *spatial) ↦ (μ, log σ²) with len(channels) stride-2 blocks and two linear heads."""

    def __init__(self, input_shape: Sequence[int], latent_dim: int, channels: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        self.body, features = conv_body(input_shape, channels)
        self.mean = nn.Linear(features, latent_dim)
        self.log_var = nn.Linear(features, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.mean(h), self.log_var(h)


class ConvMetric(nn.Module):
    """x ↦ (diagonal, strictly-lower) parameters of the RHVAE factor L_ψ(x), convolutional body."""

    def __init__(self, input_shape: Sequence[int], latent_dim: int, channels: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        self.body, features = conv_body(input_shape, channels)
        self.diagonal = nn.Linear(features, latent_dim)
        self.lower = nn.Linear(features, latent_dim * (latent_dim - 1) // 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.diagonal(h), self.lower(h)


class ConvDecoder(nn.Module):
    """z ↦ logits of the image: linear to the coarsest grid, stride-2 transposed blocks, crop."""

    def __init__(self, output_shape: Sequence[int], latent_dim: int, channels: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        dims = len(output_shape) - 1
        self.output_shape = tuple(output_shape)
        self.coarse = (channels[-1], *_downsampled(output_shape[1:], len(channels)))
        self.linear = nn.Linear(latent_dim, math.prod(self.coarse))
        widths = list(reversed(channels))
        layers = [Convolution(dims, a, b, strides=2, kernel_size=3, norm="BATCH", act="RELU", is_transposed=True,
                              output_padding=1) for a, b in zip(widths, widths[1:] + [widths[-1]])]
        layers.append(Convolution(dims, widths[-1], output_shape[0], kernel_size=3, conv_only=True))
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.linear(z)).view(-1, *self.coarse)
        out = self.body(h)
        return out[(Ellipsis, *(slice(0, s) for s in self.output_shape[1:]))]
