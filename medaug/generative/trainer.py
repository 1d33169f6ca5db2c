"""Training loop for generators: Adam, early stopping on the validation loss, best checkpoint,
per-epoch CSV log, resume after interruption, and a hard stop on non-finite losses."""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from medaug.compute import autocast, resolve_device
from medaug.distributed import LossModule, data_parallel, replica
from medaug.errors import ConfigError, MedaugError
from medaug.generative.models import RHVAE, GenerativeModel
from medaug.generative.persistence import load_generator, save_generator
from medaug.io import atomic_write, write_text

logger = logging.getLogger(__name__)

LOG_COLUMNS = ["epoch", "train_loss", "val_loss", "best_val_loss", "seconds"]


class TrainingDivergedError(MedaugError):
    """The loss became NaN or infinite; the best checkpoint on disk is left untouched."""


@dataclass
class TrainerConfig:
    """Optimisation settings (thesis: Adam, early stopping with patience 20-50 epochs)."""

    learning_rate: float = 1e-3
    batch_size: int = 25
    max_epochs: int = 300
    patience: int = 20
    seed: int = 0
    device: str = "cpu"
    mixed_precision: bool = False   # bf16 autocast of the networks on CUDA
    checkpoint_minutes: float = 5.0  # write best/ and checkpoint.pt at most this often (and at the end)

    def __post_init__(self) -> None:
        if self.learning_rate <= 0 or self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1:
            raise ConfigError("learning_rate > 0, batch_size ≥ 1, max_epochs ≥ 1 and patience ≥ 1 are required")
        if self.checkpoint_minutes < 0:
            raise ConfigError(f"checkpoint_minutes must be ≥ 0, got {self.checkpoint_minutes}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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
                    out_dir: str | os.PathLike, config: TrainerConfig | None = None) -> dict:
    """Train ``model`` on ``train`` (N, C, *spatial) in [0, 1]; keep the best model in ``out_dir/best``.

    Under ``torchrun``, each process trains on its share of every batch with DDP
    (:mod:`medaug.distributed`) and process 0 writes. Resumes from ``out_dir/checkpoint.pt`` when
    present. The best weights are kept in memory and written with the checkpoint every
    ``checkpoint_minutes`` and at the end (a thesis-size RHVAE is 1.1 G parameters: writing it
    every epoch would dominate training). Returns a summary (epochs, best epoch and validation
    loss). A non-finite training or validation loss raises :class:`TrainingDivergedError` naming
    the epoch.
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
    state = {"epoch": 0, "best_val_loss": math.inf, "best_epoch": 0, "stale": 0}
    checkpoint = out_dir / "checkpoint.pt"
    if checkpoint.exists():
        saved = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"].cpu())  # random states live on the CPU
        torch.set_rng_state(saved["torch_rng"].cpu())
        if "cuda_rng" in saved:
            torch.cuda.set_rng_state(saved["cuda_rng"].cpu(), device)
        state = saved["state"]
        logger.info("resuming %s after epoch %d", out_dir, state["epoch"])
    log_path = out_dir / "training_log.csv"
    rows = list(csv.DictReader(log_path.open())) if log_path.exists() and state["epoch"] else []

    best: dict | None = None  # the best weights not yet on disk, with their provenance
    last_write, last_epoch_written = time.monotonic(), state["epoch"]

    def flush_best() -> None:
        nonlocal best
        if best is not None and group.is_main:  # process 0 writes for the group
            save_generator(model, out_dir / "best", best["provenance"], state_dict=best["weights"])
            best = None

    def write_checkpoint() -> None:
        """best/ first, then checkpoint.pt: a resumed run always finds the best model it recorded."""
        nonlocal last_write, last_epoch_written
        if not group.is_main:
            return
        flush_best()
        write_text(log_path, ",".join(LOG_COLUMNS) + "\n" + "".join(
            ",".join(str(r[c]) for c in LOG_COLUMNS) + "\n" for r in rows))
        snapshot = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": dict(state),
                    "generator": generator.get_state(), "torch_rng": torch.get_rng_state()}
        if device.type == "cuda":
            snapshot["cuda_rng"] = torch.cuda.get_rng_state(device)
        atomic_write(checkpoint, lambda p: torch.save(snapshot, p))
        last_write, last_epoch_written = time.monotonic(), state["epoch"]

    def diverged(message: str) -> TrainingDivergedError:
        flush_best()
        return TrainingDivergedError(f"{message}; the best model (epoch {state['best_epoch']}) is kept in "
                                     f"{out_dir / 'best'}; lower the learning rate or the RHVAE step size")

    progress = tqdm(range(state["epoch"] + 1, config.max_epochs + 1), desc="epochs", unit="epoch",
                    initial=state["epoch"], total=config.max_epochs)
    for epoch in progress:
        if state["stale"] >= config.patience:
            break
        start = time.perf_counter()
        model.train()
        total = 0.0
        for x in _batches(train, config.batch_size, generator):
            with autocast(device, config.mixed_precision):
                loss = objective(group.shard(x)).float()
            if not torch.isfinite(loss):
                raise diverged(f"non-finite training loss at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += group.mean(loss.detach()).item() * len(x)
        if isinstance(model, RHVAE):
            model.update_metric(_batches(train, config.batch_size))
        # every process scores the whole validation set; process 0's value decides for all
        val_loss = group.from_main(_mean_loss(model, validation, config.batch_size, config.seed,
                                              config.mixed_precision))
        if not math.isfinite(val_loss):
            raise diverged(f"non-finite validation loss at epoch {epoch}")
        if val_loss < state["best_val_loss"]:
            state.update(best_val_loss=val_loss, best_epoch=epoch, stale=0)
            best = {"weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
                    "provenance": {"epoch": epoch, "val_loss": val_loss, "trainer": config.to_dict()}}
        else:
            state["stale"] += 1
        state["epoch"] = epoch
        rows.append({"epoch": epoch, "train_loss": total / len(train), "val_loss": val_loss,
                     "best_val_loss": state["best_val_loss"], "seconds": round(time.perf_counter() - start, 3)})
        if time.monotonic() - last_write >= 60 * config.checkpoint_minutes:
            write_checkpoint()
        progress.set_postfix(val=f"{val_loss:.1f}", best=f"{state['best_val_loss']:.1f}")
    if last_epoch_written != state["epoch"] or not checkpoint.exists():
        write_checkpoint()
    group.barrier()
    progress.close()
    return {"epochs": state["epoch"], "best_epoch": state["best_epoch"], "best_val_loss": state["best_val_loss"],
            "model": load_generator(out_dir / "best", map_location=device)}
