"""Generator training on :mod:`medaug.training`'s loop: Adam, a budget and a patience counted in
optimiser steps, selection on the training objective (thesis §1.4.2, §1.5.6: each generator sees
its class's training images only and stops when its ELBO stops improving) or on the validation
loss, best checkpoint, per-epoch CSV log with both losses, resume after interruption, and a hard
stop on non-finite losses."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from medaug.compute import autocast, resolve_device
from medaug.distributed import LossModule, data_parallel, replica
from medaug.configuration import Config, check_device, check_seed
from medaug.errors import ConfigError, TrainingDivergedError
from medaug.generative.models import GenerativeModel
from medaug.generative.persistence import load_generator, save_generator
from medaug.run_folder import FolderLock
from medaug.training import Hooks, LoopConfig, TrainingLoop

SELECTIONS = ("train", "validation")
CHECKPOINT_FILE = "checkpoint.pt"  # resume state of an unfinished training (model, optimizer, RNG)

__all__ = ["CHECKPOINT_FILE", "SELECTIONS", "TrainerConfig", "TrainingDivergedError", "log_columns", "train_generator"]


@dataclass
class TrainerConfig(Config):
    """Optimisation settings. The budget and the patience count optimiser steps, not epochs, so that
    a 19-image class gets as many updates as a 200-image one (an epoch is ⌈N / batch_size⌉ steps).
    ``selection: train`` (default, as the thesis) keeps the weights of the epoch with the lowest
    training loss and stops when it has not improved for ``patience_steps``; ``validation`` does
    both on the validation loss. Either way the validation loss is logged (the overfitting curve)."""

    section: ClassVar[str] = 'trainer'

    learning_rate: float = 1e-3
    batch_size: int = 25
    max_steps: int = 5000
    patience_steps: int = 500
    selection: str = "train"
    seed: int = 0
    device: str = "cpu"
    mixed_precision: bool = False   # bf16 autocast of the networks (CUDA or CPU; the RHVAE metric stays in fp32)
    checkpoint_minutes: float = 5.0  # write best/ and checkpoint.pt at most this often (and at the end)

    @classmethod
    def from_dict(cls, data, where=None):
        """As :meth:`Config.from_dict`; the epoch-counted options of earlier versions are refused with
        their replacement (an epoch of a small class is one step, so the numbers do not carry over)."""
        renamed = {"max_epochs": "max_steps", "patience": "patience_steps"}
        old = sorted(key for key in (data or {}) if key in renamed) if isinstance(data, dict) else []
        if old:
            raise ConfigError(f"{where or cls.section}: {', '.join(old)} counted epochs and were replaced by "
                              f"{', '.join(renamed[k] for k in old)} (optimiser steps; an epoch is ⌈images / "
                              "batch_size⌉ steps, one for a small class): for example max_steps: 5000, "
                              "patience_steps: 500")
        return super().from_dict(data, where)

    def validate(self) -> None:
        if self.learning_rate <= 0 or self.batch_size < 1 or self.max_steps < 1 or self.patience_steps < 1:
            raise ConfigError("learning_rate > 0, batch_size ≥ 1, max_steps ≥ 1 and patience_steps ≥ 1 are required")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"{self.section}.selection: choose train (the thesis: the training objective selects "
                              f"and stops) or validation, got {self.selection!r}")
        if self.checkpoint_minutes < 0:
            raise ConfigError(f"checkpoint_minutes must be ≥ 0, got {self.checkpoint_minutes}")
        check_device(self.device, f"{self.section}.device")
        check_seed(self.seed, f"{self.section}.seed")

    def epochs(self, images: int) -> tuple[int, int]:
        """(max epochs, patience in epochs) of a training set of ``images``: the step counts over
        ⌈images / batch_size⌉ steps per epoch, rounded up."""
        per_epoch = math.ceil(images / self.batch_size)
        return math.ceil(self.max_steps / per_epoch), math.ceil(self.patience_steps / per_epoch)


def log_columns(selection: str, validation: bool = True) -> list[str]:
    """The columns of ``training_log.csv``: both losses (the validation loss when there are
    validation images), and the best so far of the selecting one."""
    best = "best_train_loss" if selection == "train" else "best_val_loss"
    return ["epoch", "train_loss", *(["val_loss"] if validation else []), best, "seconds"]


def _batches(data: torch.Tensor, batch_size: int, generator: torch.Generator | None = None):
    order = torch.randperm(len(data), generator=generator) if generator is not None else torch.arange(len(data))
    for start in range(0, len(data), batch_size):
        yield data[order[start:start + batch_size]]


def _mean_loss(model: GenerativeModel, data: torch.Tensor, batch_size: int, seed: int,
               mixed_precision: bool = False) -> float:
    """Validation loss with its own fixed noise, leaving the training random stream untouched."""
    model.eval()
    devices = [data.device] if data.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad(), autocast(data.device, mixed_precision):
        torch.manual_seed(seed)
        total = sum(model.loss(x).float().item() * len(x) for x in _batches(data, batch_size))
    model.train()
    return total / len(data)


def train_generator(model: GenerativeModel, train: torch.Tensor, validation: torch.Tensor,
                    out_dir: str | os.PathLike, config: TrainerConfig | None = None, *,
                    settings: dict | None = None) -> dict:
    """Train ``model`` on ``train`` (N, C, *spatial) in [0, 1]; keep the best model in ``out_dir/best``.

    ``config.selection`` decides which loss chooses the kept weights and stops training; the
    validation loss on ``validation`` is computed every epoch either way.

    The loop is :mod:`medaug.training`'s. Under ``torchrun``, each process trains on its share of
    every batch with DDP (:mod:`medaug.distributed`) and process 0 writes. Resumes from
    ``out_dir/checkpoint.pt`` when present, if it was written with the same ``settings`` (default:
    the model's configuration and the trainer settings other than ``max_steps``, ``patience_steps``,
    ``device`` and ``checkpoint_minutes``); other settings raise :class:`ConfigError`. The best
    weights are kept in memory and written with the checkpoint every ``checkpoint_minutes`` and
    at the end (a thesis-size RHVAE is 1.1 G parameters: writing it every epoch would dominate
    training). Returns a summary (epochs, steps, best epoch and its selecting loss). A non-finite
    training or validation loss raises :class:`TrainingDivergedError` naming the epoch.
    """
    config = config or TrainerConfig()
    out_dir = Path(out_dir)
    group = replica(resolve_device(config.device))
    device = group.device
    model.to(device)
    objective = data_parallel(LossModule(model), group, unused_parameters=True)
    train, validation = train.to(device), validation.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    if settings is None:
        trainer = {k: v for k, v in config.to_dict().items()
                   if k not in ("max_steps", "patience_steps", "device", "checkpoint_minutes")}
        settings = {"generator": model.config.to_dict(), "trainer": trainer}
    steps: list[tuple[torch.Tensor, int]] = []  # this epoch's losses and global batch sizes
    score = "train_loss" if config.selection == "train" else "val_loss"
    monitored = config.selection == "train" and len(validation) > 0
    if config.selection == "validation" and not len(validation):
        raise ConfigError("trainer.selection: validation needs validation images; give some or select on train")

    def validation_loss(epoch: int) -> float:
        return _mean_loss(model, validation, config.batch_size, config.seed, config.mixed_precision)

    def train_step(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, config.mixed_precision):
            loss = objective(group.shard(x)).float()
        steps.append((loss.detach(), len(x)))
        return loss

    def train_loss() -> float:
        total = sum(group.mean(loss).item() * n for loss, n in steps)
        steps.clear()
        return total / len(train)

    def save_best(weights: dict, epoch: int, loss: float) -> None:
        provenance = {"epoch": epoch, score: loss, "trainer": config.to_dict()}
        save_generator(model, out_dir / "best", provenance, state_dict=weights)

    hooks = Hooks(
        batches=lambda epoch: _batches(train, config.batch_size, generator),
        train_step=train_step,
        train_loss=train_loss,
        on_epoch_end=lambda epoch: model.on_epoch_end(_batches(train, config.batch_size)),
        # every process scores the whole validation set; process 0's value counts for all
        validate=validation_loss if config.selection == "validation" else None,
        monitor=(lambda epoch: {"val_loss": validation_loss(epoch)}) if monitored else None,
        save_best=save_best)
    max_epochs, patience = config.epochs(len(train))
    loop = LoopConfig(max_epochs=max_epochs, patience=patience, score=score,
                      columns=log_columns(config.selection, validation=len(validation) > 0),
                      monitors=("val_loss",) if monitored else (),
                      checkpoint_minutes=config.checkpoint_minutes, progress="epochs",
                      advice=f"the best model so far stays in {out_dir / 'best'}; lower the learning rate "
                             "or the RHVAE step size")
    with FolderLock(out_dir, "medaug train-generator") if group.is_main else contextlib.nullcontext():
        result = TrainingLoop(model, optimizer, hooks, loop, generators=[generator],
                              checkpoint=out_dir / CHECKPOINT_FILE, settings=settings,
                              log=out_dir / "training_log.csv", group=group).run()
    return {"epochs": result.epochs, "steps": result.epochs * math.ceil(len(train) / config.batch_size),
            "best_epoch": result.best_epoch, "selection": config.selection, f"best_{score}": result.best_score,
            "model": load_generator(out_dir / "best", map_location=device)}
