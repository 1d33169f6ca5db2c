"""The one training loop behind every network medaug trains: the generators, the longitudinal VAE,
the trajectory model, the two-stage VAE and the CNN classifiers.

The loop owns the rules they share:

- epochs of optimiser steps over the batches a model hands it, in the order it hands them (so
  random numbers are drawn in the model's own order), then the scheduler's step;
- a hard stop on a non-finite training loss (checked before the step is applied) or validation
  score: :class:`~medaug.errors.TrainingDivergedError`, naming the epoch and the fix;
- a selection score after every epoch, lower-is-better (a loss) or higher-is-better (a metric):
  a validation score, or the epoch's training loss (``score="train_loss"``, as the thesis trains
  its generators); the weights of the best epoch are kept (the first best on ties) and, with a
  patience, training stops after that many epochs without a better score. Values that are logged
  but select nothing (a generator's validation loss beside its training loss) are *monitors*;
- an optional checkpoint, written atomically every ``checkpoint_minutes`` and after the last
  epoch, from which an interrupted run resumes exactly: model, optimiser, scheduler, the global
  and the model's own random generators, the loop's counters, the best weights and the log rows.
  It records a fingerprint of the settings it was trained with; resuming it with other settings
  raises :class:`~medaug.errors.ConfigError` naming the folder and the settings that differ;
- a tqdm progress bar and a per-epoch log (returned, and written as CSV / TSV with the checkpoint
  when a log path is given).

What is specific to a model comes through :class:`Hooks`. Under ``torchrun``
(:mod:`medaug.distributed`) process 0's score decides for all and process 0 alone writes.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from tqdm import tqdm

from medaug.configuration import Config
from medaug.distributed import Replica
from medaug.errors import ConfigError, TrainingDivergedError
from medaug.io import read_torch, write_text, write_torch
from medaug.run_folder import canonical_json, fingerprint

logger = logging.getLogger(__name__)

STANDARD_COLUMNS = ("epoch", "train_loss", "seconds")


@dataclass
class LoopConfig(Config):
    """How long the loop runs, when it stops, how often it checkpoints and what it logs."""

    section: ClassVar[str] = "training loop"

    max_epochs: int
    patience: int | None = None           # stop after this many epochs without a better score (None: never early)
    higher_is_better: bool = False        # the score is a metric to maximise, else a loss to minimise
    score: str = "val_loss"               # the score's log column (best so far: best_<score>); train_loss: the training loss
    monitors: tuple[str, ...] = ()        # logged values that select nothing (Hooks.monitor's keys)
    columns: tuple[str, ...] = ("epoch", "val_loss")  # log columns: epoch, train_loss, <score>, best_<score>, monitors, seconds
    checkpoint_minutes: float = 0.0       # write the checkpoint at most this often (0: every epoch), and at the end
    progress: str | None = "epochs"       # progress-bar label (None: no bar)
    advice: str = "lower the learning rate"  # the fix a divergence error suggests

    def validate(self) -> None:
        if self.max_epochs < 1:
            raise ConfigError(f"{self.section}.max_epochs must be ≥ 1, got {self.max_epochs}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"{self.section}.patience must be ≥ 1 (or null: no early stopping), got {self.patience}")
        if self.checkpoint_minutes < 0:
            raise ConfigError(f"{self.section}.checkpoint_minutes must be ≥ 0, got {self.checkpoint_minutes}")
        known = (*STANDARD_COLUMNS, self.score, f"best_{self.score}", *self.monitors)
        unknown = [c for c in self.columns if c not in known]
        if unknown:
            raise ConfigError(f"{self.section}.columns: unknown column(s) {', '.join(unknown)}; "
                              f"choose among {', '.join(known)}")


def _always(epoch: int) -> bool:
    return True


@dataclass
class Hooks:
    """What the loop asks of a model. Only ``batches`` and ``train_step`` are required."""

    batches: Callable[[int], Iterable[Any]]
    """The training batches of an epoch, in order (drawn lazily where the steps draw random numbers too)."""
    train_step: Callable[[Any], torch.Tensor]
    """The loss of one batch (a scalar); the loop checks it, back-propagates it and steps the optimiser."""
    validate: Callable[[int], float] | None = None
    """The validation score after an epoch; None: no validation, the last weights are kept (unless
    the loop selects on the training loss)."""
    monitor: Callable[[int], dict[str, float]] | None = None
    """Values logged after an epoch that select nothing (``LoopConfig.monitors``); non-finite ones stop training."""
    train_loss: Callable[[], float] | None = None
    """The epoch's training loss for the log, called once after its steps (the hook sums its own steps)."""
    on_epoch_end: Callable[[int], None] | None = None
    """Work after an epoch's steps, before validation (an RHVAE stores its training-set metric)."""
    selectable: Callable[[int], bool] = _always
    """Whether the weights after this epoch may be kept as the best (warm-up epochs may not)."""
    save_best: Callable[[dict, int, float], None] | None = None
    """Writes the best weights (state dict, epoch, score) where the caller keeps them, with every
    checkpoint; the loop then drops them from memory and from the checkpoint, and leaves the
    model with its last weights. Without it the best weights are loaded into the model at the end."""


@dataclass
class LoopState:
    """The loop's counters, saved in the checkpoint."""

    epoch: int = 0            # the last epoch trained
    best_score: float = math.inf
    best_epoch: int = 0       # 0: no epoch has been selected yet
    stale: int = 0            # epochs since the best one


@dataclass
class TrainingResult:
    """What a training run did (over all its runs, when resumed)."""

    epochs: int
    best_epoch: int
    best_score: float
    log: list[dict] = field(default_factory=list)


def _flatten(settings: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(settings, Mapping):
        return {prefix: settings}
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _differences(recorded: Mapping, current: Mapping) -> str:
    """``key: recorded → current`` for every setting that differs."""
    old, new = _flatten(recorded), _flatten(current)
    changed = [key for key in sorted(set(old) | set(new)) if old.get(key, "unset") != new.get(key, "unset")]
    return "; ".join(f"{key}: {old.get(key, 'unset')} → {new.get(key, 'unset')}" for key in changed)


def _write_log(path: Path, rows: list[dict], columns: Sequence[str]) -> None:
    """The rows as CSV (``.csv``) or TSV, values as ``str`` gives them."""
    separator = "," if path.suffix == ".csv" else "\t"
    write_text(path, separator.join(columns) + "\n" + "".join(
        separator.join(str(row[c]) for c in columns) + "\n" for row in rows))


class TrainingLoop:
    """Trains ``model`` with ``optimizer`` (and ``scheduler``, stepped once per epoch) following
    ``config`` and ``hooks``; see the module docstring for the rules.

    ``generators``: the model's own random generators (batch order, noise), saved and restored
    with the checkpoint besides the global CPU and CUDA generators. ``checkpoint``: the file to
    resume from and write; ``settings``: what a resumed run must match (required with a
    checkpoint). ``log``: a CSV / TSV file written with every checkpoint. ``group``: this
    process's data-parallel group (default: a single process).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, hooks: Hooks, config: LoopConfig, *,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                 generators: Sequence[torch.Generator] = (), checkpoint: str | os.PathLike | None = None,
                 settings: Mapping | None = None, log: str | os.PathLike | None = None,
                 group: Replica | None = None) -> None:
        if checkpoint is not None and settings is None:
            raise ValueError("a checkpoint needs the settings a resumed run must match")
        if config.score == "train_loss" and hooks.train_loss is None:
            raise ValueError("selecting on the training loss needs a train_loss hook")
        self.model, self.optimizer, self.scheduler, self.hooks, self.config = model, optimizer, scheduler, hooks, config
        self.generators = list({id(g): g for g in generators}.values())  # one generator may serve twice
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.settings = dict(settings or {})
        self.log_path = Path(log) if log is not None else None
        parameter = next(model.parameters(), None)
        self.device = parameter.device if parameter is not None else torch.device("cpu")
        self.group = group or Replica(0, 1, self.device)
        self.state = LoopState(best_score=-math.inf if config.higher_is_better else math.inf)
        self.rows: list[dict] = []
        self.best: dict | None = None       # the best weights not yet handed to save_best
        self.last_epoch_written = 0

    def run(self) -> TrainingResult:
        if self.checkpoint is not None and self.checkpoint.is_file():
            self._resume()
        config, hooks, state = self.config, self.hooks, self.state
        self.last_epoch_written, last_write = state.epoch, time.monotonic()
        epochs = range(state.epoch + 1, config.max_epochs + 1)
        progress = tqdm(epochs, desc=config.progress, unit="epoch", initial=state.epoch, total=config.max_epochs,
                        disable=config.progress is None)
        for epoch in progress:
            if config.patience is not None and state.stale >= config.patience:
                break
            start = time.perf_counter()
            self.model.train()
            for batch in hooks.batches(epoch):
                loss = hooks.train_step(batch)
                if not torch.isfinite(loss):
                    raise self._diverged(f"non-finite training loss ({loss.item()}) at epoch {epoch}")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            values: dict[str, Any] = {"epoch": epoch}
            if hooks.train_loss is not None:
                values["train_loss"] = hooks.train_loss()
                if not math.isfinite(values["train_loss"]):
                    raise self._diverged(f"non-finite training loss ({values['train_loss']}) at epoch {epoch}")
            if hooks.on_epoch_end is not None:
                hooks.on_epoch_end(epoch)
            if hooks.monitor is not None:
                for key, value in hooks.monitor(epoch).items():
                    values[key] = self.group.from_main(value)
                    if not math.isfinite(values[key]):
                        raise self._diverged(f"non-finite {key} ({values[key]}) at epoch {epoch}")
            score = None
            if config.score == "train_loss":
                score = values["train_loss"]
            elif hooks.validate is not None:
                score = self.group.from_main(hooks.validate(epoch))  # process 0's score decides for all
                if not math.isfinite(score):
                    raise self._diverged(f"non-finite validation score ({config.score} = {score}) at epoch {epoch}")
            if score is not None:
                self._select(epoch, score)
                values[config.score] = score
                values[f"best_{config.score}"] = state.best_score
                progress.set_postfix(score=f"{score:.4g}", best=f"{state.best_score:.4g}")
            state.epoch = epoch
            values["seconds"] = round(time.perf_counter() - start, 3)
            self.rows.append({c: values[c] for c in config.columns})
            if time.monotonic() - last_write >= 60 * config.checkpoint_minutes:
                self._write()
                last_write = time.monotonic()
        if self.last_epoch_written != state.epoch or (self.checkpoint is not None and not self.checkpoint.exists()):
            self._write()
        self.group.barrier()
        progress.close()
        if self.best is not None and hooks.save_best is None:
            self.model.load_state_dict(self.best)
        return TrainingResult(state.epoch, state.best_epoch, state.best_score, list(self.rows))

    def _select(self, epoch: int, score: float) -> None:
        """Keep the weights of a better epoch (strictly better: the first best on ties)."""
        state = self.state
        if not self.hooks.selectable(epoch):
            return
        better = score > state.best_score if self.config.higher_is_better else score < state.best_score
        if better:
            state.best_score, state.best_epoch, state.stale = score, epoch, 0
            self.best = copy.deepcopy(self.model.state_dict())
        else:
            state.stale += 1

    def _diverged(self, message: str) -> TrainingDivergedError:
        """The error to raise, once the best weights so far are handed to ``save_best``."""
        self._save_best()
        best = f" (best epoch so far: {self.state.best_epoch})" if self.state.best_epoch else ""
        return TrainingDivergedError(f"{message}{best}; {self.config.advice}")

    def _save_best(self) -> None:
        if self.hooks.save_best is not None and self.best is not None:
            if self.group.is_main:  # process 0 writes for the group
                self.hooks.save_best(self.best, self.state.best_epoch, self.state.best_score)
            self.best = None

    def _write(self) -> None:
        """The best weights first, then the log, then the checkpoint: a resumed run always finds
        the best model it recorded."""
        self.last_epoch_written = self.state.epoch
        self._save_best()
        if not self.group.is_main:
            return
        if self.log_path is not None:
            _write_log(self.log_path, self.rows, self.config.columns)
        if self.checkpoint is None:
            return
        snapshot = {"fingerprint": fingerprint(self.settings), "settings": canonical_json(self.settings),
                    "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "loop": asdict(self.state), "log": self.rows, "torch_rng": torch.get_rng_state(),
                    "generators": [g.get_state() for g in self.generators]}
        if self.scheduler is not None:
            snapshot["scheduler"] = self.scheduler.state_dict()
        if self.device.type == "cuda":
            snapshot["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if self.best is not None:
            snapshot["best"] = self.best
        write_torch(self.checkpoint, snapshot)

    def _resume(self) -> None:
        folder = self.checkpoint.parent
        saved = read_torch(self.checkpoint, "delete it to start the training over, or train into a new folder",
                           self.device)
        if saved.get("fingerprint") != fingerprint(self.settings):
            if "settings" not in saved:
                raise ConfigError(f"{folder} holds a checkpoint ({self.checkpoint.name}) from an earlier medaug "
                                  "without its settings; delete it to start over or use a new folder")
            differences = _differences(json.loads(saved["settings"]), json.loads(canonical_json(self.settings)))
            raise ConfigError(f"{folder} holds a training with other settings ({differences}) in "
                              f"{self.checkpoint.name}; resume it with the same settings, or use a new folder "
                              "(or delete the checkpoint to start over)")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"].cpu())  # random states live on the CPU
        if "cuda_rng" in saved and self.device.type == "cuda":
            torch.cuda.set_rng_state(saved["cuda_rng"].cpu(), self.device)
        # a run resumed on another device may hold one generator more or less (a CUDA noise stream)
        for generator, generator_state in zip(self.generators, saved["generators"]):
            generator.set_state(generator_state.cpu())
        self.state = LoopState(**saved["loop"])
        self.rows = list(saved["log"])
        self.best = saved.get("best")
        logger.info("resuming %s after epoch %d", self.checkpoint, self.state.epoch)
