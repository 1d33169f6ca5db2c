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

    def __post_init__(self) -> None:
        if self.learning_rate <= 0 or self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1:
            raise ConfigError("learning_rate > 0, batch_size ≥ 1, max_epochs ≥ 1 and patience ≥ 1 are required")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _batches(data: torch.Tensor, batch_size: int, generator: torch.Generator | None = None):
    order = torch.randperm(len(data), generator=generator) if generator is not None else torch.arange(len(data))
    for start in range(0, len(data), batch_size):
        yield data[order[start:start + batch_size]]


def _mean_loss(model: GenerativeModel, data: torch.Tensor, batch_size: int, seed: int) -> float:
    """Validation loss with its own fixed noise, leaving the training random stream untouched."""
    model.eval()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        total = sum(model.loss(x).item() * len(x) for x in _batches(data, batch_size))
    model.train()
    return total / len(data)


def train_generator(model: GenerativeModel, train: torch.Tensor, validation: torch.Tensor,
                    out_dir: str | os.PathLike, config: TrainerConfig | None = None) -> dict:
    """Train ``model`` on ``train`` (N, C, *spatial) in [0, 1]; keep the best model in ``out_dir/best``.

    Resumes from ``out_dir/checkpoint.pt`` when present. Returns a summary (epochs, best epoch and
    validation loss). A non-finite training or validation loss raises :class:`TrainingDivergedError`
    naming the epoch.
    """
    config = config or TrainerConfig()
    out_dir = Path(out_dir)
    device = torch.device(config.device)
    model.to(device)
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
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        state = saved["state"]
        logger.info("resuming %s after epoch %d", out_dir, state["epoch"])
    log_path = out_dir / "training_log.csv"
    rows = list(csv.DictReader(log_path.open())) if log_path.exists() and state["epoch"] else []

    progress = tqdm(range(state["epoch"] + 1, config.max_epochs + 1), desc="epochs", unit="epoch",
                    initial=state["epoch"], total=config.max_epochs)
    for epoch in progress:
        if state["stale"] >= config.patience:
            break
        start = time.perf_counter()
        model.train()
        total = 0.0
        for x in _batches(train, config.batch_size, generator):
            loss = model.loss(x)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"non-finite training loss at epoch {epoch}; the best model "
                                            f"(epoch {state['best_epoch']}) is kept in {out_dir / 'best'}; "
                                            "lower the learning rate or the RHVAE step size")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
        if isinstance(model, RHVAE):
            model.update_metric(_batches(train, config.batch_size))
        val_loss = _mean_loss(model, validation, config.batch_size, config.seed)
        if not math.isfinite(val_loss):
            raise TrainingDivergedError(f"non-finite validation loss at epoch {epoch}; best model kept in "
                                        f"{out_dir / 'best'}")
        if val_loss < state["best_val_loss"]:
            state.update(best_val_loss=val_loss, best_epoch=epoch, stale=0)
            save_generator(model, out_dir / "best", {"epoch": epoch, "val_loss": val_loss,
                                                     "trainer": config.to_dict()})
        else:
            state["stale"] += 1
        state["epoch"] = epoch
        rows.append({"epoch": epoch, "train_loss": total / len(train), "val_loss": val_loss,
                     "best_val_loss": state["best_val_loss"], "seconds": round(time.perf_counter() - start, 3)})
        write_text(log_path, ",".join(LOG_COLUMNS) + "\n" + "".join(
            ",".join(str(r[c]) for c in LOG_COLUMNS) + "\n" for r in rows))
        snapshot = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": dict(state),
                    "generator": generator.get_state(), "torch_rng": torch.get_rng_state()}
        atomic_write(checkpoint, lambda p, s=snapshot: torch.save(s, p))
        progress.set_postfix(val=f"{val_loss:.1f}", best=f"{state['best_val_loss']:.1f}")
    progress.close()
    return {"epochs": state["epoch"], "best_epoch": state["best_epoch"], "best_val_loss": state["best_val_loss"],
            "model": load_generator(out_dir / "best", map_location=device)}
