"""Where the tensor work runs: the device named in a config (checked, with the fix in the error),
bf16 autocast for mixed precision on CUDA, and pinned, asynchronous host-to-device copies."""

from __future__ import annotations

import contextlib

import torch

from medaug.errors import ConfigError


def resolve_device(name: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:i``; CUDA that this torch cannot reach is refused with the fix."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device must be cpu or cuda[:i], got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be cpu or cuda[:i], got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but this torch ({torch.__version__}) sees no CUDA GPU; "
                              "install a CUDA build of torch or set device: cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    return device


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when ``enabled`` (no loss scaling needed); a no-op on the CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host batch to ``device``; through pinned memory and without blocking on CUDA."""
    if device.type == "cuda" and batch.device.type == "cpu":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)
