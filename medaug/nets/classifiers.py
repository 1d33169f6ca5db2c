"""Conv5_FC3-style 3D CNN (Wen et al., 2020; thesis Fig. 1.7 A1/A2) sized from the input shape.

Up to five [Conv k3 → BatchNorm → ReLU → MaxPool 2] blocks with 8-16-32-64-128 channels (fewer
blocks when the input is too small), then Dropout → FC → LeakyReLU → FC → LeakyReLU → FC(classes).
The fully connected widths keep A1's ratio to the flattened size (1300 and 50 for 169×208×179),
as the thesis does for its down-sampled A2 variant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

REFERENCE_FLAT = 128 * 5 * 6 * 5  # flattened size for a 169×208×179 input with floor pooling
REFERENCE_FC = (1300, 50)


class Conv5FC3(nn.Module):
    """Baseline CNN classifier for (C, X, Y, Z) (or 2D (C, X, Y)) inputs; outputs class logits.

    ``channels`` sets the number and widths of the conv blocks, ``fc_scale`` multiplies the
    fully connected widths (both varied by the optimized-CNN search)."""

    def __init__(self, input_shape: Sequence[int], classes: int = 2, channels: Sequence[int] = (8, 16, 32, 64, 128),
                 dropout: float = 0.5, fc_scale: float = 1.0) -> None:
        super().__init__()
        dims = len(input_shape) - 1
        conv, norm, pool = ((nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d) if dims == 3 else
                            (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d))
        blocks = min(len(channels), int(math.log2(min(input_shape[1:]))))
        layers, previous, shape = [], input_shape[0], list(input_shape[1:])
        for width in channels[:blocks]:
            layers += [conv(previous, width, 3, padding=1), norm(width), nn.ReLU(), pool(2)]
            previous, shape = width, [s // 2 for s in shape]
        self.features = nn.Sequential(*layers, nn.Flatten())
        flat = previous * math.prod(shape)
        hidden = [max(8, round(fc_scale * width * flat / REFERENCE_FLAT)) for width in REFERENCE_FC]
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(flat, hidden[0]), nn.LeakyReLU(),
                                        nn.Linear(hidden[0], hidden[1]), nn.LeakyReLU(),
                                        nn.Linear(hidden[1], classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
