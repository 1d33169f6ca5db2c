"""Where the tensor work runs: the device named in a config (checked, with the fix in the error),
bf16 autocast for mixed precision on CUDA, and pinned, asynchronous host-to-device copies."""

from __future__ import annotations

import contextlib

import torch

from medaug.errors import ConfigError

INFERENCE_BATCH = 64
"""Images per gradient-free pass (encode, decode, copy to the device, pool): 64 images of the thesis'
84×104×89 size are about 200 MB in float32, small beside a GPU's memory yet enough to keep it busy."""


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
    """bf16 autocast on ``device`` (CUDA or CPU) when ``enabled``; no loss scaling is needed in bf16.
    The RHVAE metric leaves it (:func:`medaug.generative.metric.full_precision`)."""
    if enabled and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_record(device: str, mixed_precision: bool) -> dict:
    """A key for step records on the CPU under ``mixed_precision``: it did nothing there before it
    became bf16 autocast, so a result recorded earlier with ``mixed_precision: true`` (fp32) is redone."""
    return {"autocast": "bf16-cpu"} if mixed_precision and str(device).startswith("cpu") else {}


@contextlib.contextmanager
def cudnn_autotune(enabled: bool):
    """Let cuDNN time its convolution algorithms for the shapes met and keep the fastest (CUDA
    only; the choice may differ between runs, so CUDA results are not bit-reproducible)."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def conv_layout(batch: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``batch`` in the channels-last layout of 3D convolutions (NDHWC) when asked; values unchanged."""
    if channels_last and batch.dim() == 5:
        return batch.contiguous(memory_format=torch.channels_last_3d)
    return batch


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host batch to ``device``; through pinned memory and without blocking on CUDA."""
    if device.type == "cuda" and batch.device.type == "cpu":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)
