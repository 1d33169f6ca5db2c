"""Shared by the scale benchmarks: volumes that cost what preprocessed MRI costs (smooth random
fields in [0, 1] with a dark central ellipsoid, larger for label 1: no anatomy, no accuracy
claims) and a sampler of the peak resident memory of a process tree."""

import contextlib
import threading
import time

import psutil
import torch


def volumes(n: int, label: int, size, seed: int, batch: int = 50):
    """``n`` images (B, 1, *size) in batches of ``batch``, seeded."""
    generator = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, s) for s in size], indexing="ij"))
    for start in range(0, n, batch):
        count = min(batch, n - start)
        coarse = torch.rand(count, 1, *[max(2, s // 8) for s in size], generator=generator)
        field = torch.nn.functional.interpolate(coarse, size=size, mode="trilinear", align_corners=False)
        radius = 0.25 + 0.1 * label + 0.05 * torch.rand(count, generator=generator)
        inside = ((grid ** 2).sum(0)[None] < radius[:, None, None, None] ** 2).float()[:, None]
        yield (0.8 * field + 0.2) * (1 - 0.7 * inside)


class PeakMemory(threading.Thread):
    """Peak resident memory (GB) of this process plus its children (DataLoader workers), sampled
    every 0.1 s; file pages read through the OS cache are not resident in any of them."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0.0
        self.start()

    def run(self) -> None:
        me = psutil.Process()
        while True:
            total = 0
            for process in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak = max(self.peak, total / 1024 ** 3)
            time.sleep(0.1)
