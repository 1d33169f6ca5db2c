"""Train a classifier with model selection on the best validation balanced accuracy (thesis §1.5.5)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from medaug.compute import autocast, resolve_device, to_device
from medaug.data.volumes import Volumes
from medaug.distributed import data_parallel, replica
from medaug.errors import ConfigError
from medaug.study.metrics import classification_metrics


@dataclass
class ClassifierTraining:
    """Settings of one classifier run (thesis baseline: 100 epochs, Adam)."""

    epochs: int = 100
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 8
    seed: int = 0
    device: str = "cpu"
    mixed_precision: bool = False   # bf16 autocast on CUDA
    loader_workers: int = 0         # DataLoader processes reading the images (0: in the training process)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.learning_rate <= 0 or self.weight_decay < 0:
            raise ConfigError("classifier training needs epochs ≥ 1, batch_size ≥ 2 (batch norm), "
                              "learning_rate > 0 and weight_decay ≥ 0")
        if self.loader_workers < 0:
            raise ConfigError(f"loader_workers must be ≥ 0, got {self.loader_workers}")


def predict_proba(model: nn.Module, images: torch.Tensor | Volumes, batch_size: int = 16,
                  mixed_precision: bool = False) -> np.ndarray:
    """Softmax class probabilities (N, classes) in evaluation mode, on the model's device; images
    are read batch by batch (a tensor or streamed :class:`Volumes`)."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad(), autocast(device, mixed_precision):
        return torch.cat([torch.softmax(model(to_device(part, device)).float(), dim=1).cpu()
                          for part in Volumes.of(images).batches(batch_size)]).numpy()


def _epoch_loader(images: Volumes, batches: list[torch.Tensor], settings: ClassifierTraining,
                  device: torch.device) -> DataLoader:
    """The images of each batch (this process's share of it), in the order drawn for this epoch."""
    return DataLoader(images, batch_sampler=[index.tolist() for index in batches],
                      num_workers=settings.loader_workers, pin_memory=device.type == "cuda")


def train_classifier(model: nn.Module, train: tuple[torch.Tensor | Volumes, torch.Tensor],
                     validation: tuple[torch.Tensor | Volumes, torch.Tensor], settings: ClassifierTraining,
                     classes: tuple[str, str] = ("CN", "AD")) -> tuple[nn.Module, list[dict]]:
    """Cross-entropy training; returns the weights of the epoch with the best validation balanced
    accuracy (first best on ties) and the per-epoch log (loss, validation balanced accuracy).
    Images stream from ``train[0]`` through a DataLoader (pinned memory on CUDA). Under
    ``torchrun`` each process trains on its share of every batch with DDP (batch norm synchronised
    on CUDA); all score the whole validation set and return the same weights."""
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    group = replica(resolve_device(settings.device))
    device = group.device
    model.to(device)
    network = data_parallel(model, group)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    loss_function = nn.CrossEntropyLoss()
    x, y = Volumes.of(train[0]), train[1]
    names = np.array(classes)
    best, best_state, log = -1.0, None, []
    for epoch in range(1, settings.epochs + 1):
        model.train()
        total = torch.zeros((), device=device)
        # a last batch of one image per process is dropped: batch norm needs two samples
        batches = [group.shard(i) for i in torch.randperm(len(x), generator=generator).split(settings.batch_size)
                   if len(i) >= 2 * group.world_size]
        for index, batch in zip(batches, _epoch_loader(x, batches, settings, device)):
            batch, target = to_device(batch, device), to_device(y[index], device)
            with autocast(device, settings.mixed_precision):
                loss = loss_function(network(batch).float(), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += group.mean(loss.detach()) * len(index) * group.world_size
        group.share_buffers(model)  # the replicas score validation with the same statistics
        probabilities = predict_proba(model, validation[0], mixed_precision=settings.mixed_precision)
        scores = classification_metrics(names[validation[1].numpy()], names[probabilities.argmax(1)],
                                        probabilities[:, 1], positive=classes[1])
        log.append({"epoch": epoch, "train_loss": total.item() / len(x), "val_balanced_accuracy": scores["balanced_accuracy"]})
        if scores["balanced_accuracy"] > best:
            best, best_state = scores["balanced_accuracy"], copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model.eval(), log
