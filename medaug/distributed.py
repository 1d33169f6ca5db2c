"""Data-parallel training over several GPUs (or CPU processes) with torch DDP under ``torchrun``.

Launched as ``torchrun --nproc_per_node=G -m medaug train-generator ...``, every process trains
the same model on its share of each global batch; DDP averages the gradients, so with equal shares
a step equals the single-process step on the whole batch. Process 0 writes every output; the
others wait at barriers. Outside torchrun (no ``WORLD_SIZE`` > 1) nothing here changes anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from medaug.errors import ConfigError


@dataclass(frozen=True)
class Replica:
    """This process's place in a data-parallel group."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's rows of a global batch (rows rank, rank + world, ...)."""
        return batch[self.rank::self.world_size]

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def share_buffers(self, module: nn.Module) -> None:
        """Process 0's buffers (batch-norm running statistics) on every process."""
        if self.world_size > 1:
            for buffer in module.buffers():
                dist.broadcast(buffer, 0)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The group's mean of a per-process tensor (the tensor itself for one process)."""
        if self.world_size == 1:
            return value
        value = value.clone()
        dist.all_reduce(value)
        return value / self.world_size

    def from_main(self, value: float) -> float:
        """Process 0's value, on every process (so all take the same decisions)."""
        if self.world_size == 1:
            return value
        shared = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(shared, 0)
        return float(shared.item())


def is_main_process() -> bool:
    """True outside torchrun and in its process 0 (the one that writes outputs)."""
    return os.environ.get("RANK", "0") == "0"


def replica(device: torch.device) -> Replica:
    """The process group that ``torchrun`` describes in the environment, joined once (NCCL on CUDA,
    gloo on the CPU; each process takes GPU ``LOCAL_RANK``), or a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Replica(0, 1, device)
    if device.type == "cuda":
        if device.index not in (None, 0):
            raise ConfigError(f"under torchrun each process uses GPU LOCAL_RANK; ask for device cuda, not {device}")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Replica(dist.get_rank(), dist.get_world_size(), device)


def data_parallel(module: nn.Module, group: Replica, *, unused_parameters: bool = False) -> nn.Module:
    """``module`` wrapped in DDP for a group of several processes (batch norm synchronised on
    CUDA), else unchanged. ``unused_parameters``: some parameters may not enter the loss (an
    autoencoder's variance head, say)."""
    if group.world_size == 1:
        return module
    if group.device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return DistributedDataParallel(module, device_ids=[group.device.index] if group.device.type == "cuda" else None,
                                   find_unused_parameters=unused_parameters)


class LossModule(nn.Module):
    """``model.loss(x)`` as a forward pass, so that DDP synchronises the gradients of the loss."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.loss(x)
