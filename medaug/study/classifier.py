"""Train a classifier with model selection on the best validation balanced accuracy (thesis §1.5.5)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

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


def predict_proba(model: nn.Module, images: torch.Tensor, batch_size: int = 16) -> np.ndarray:
    """Softmax class probabilities (N, classes) in evaluation mode, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([torch.softmax(model(part.to(device)), dim=1).cpu()
                          for part in images.split(batch_size)]).numpy()


def train_classifier(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                     validation: tuple[torch.Tensor, torch.Tensor], settings: ClassifierTraining,
                     classes: tuple[str, str] = ("CN", "AD")) -> tuple[nn.Module, list[dict]]:
    """Cross-entropy training; returns the weights of the epoch with the best validation balanced
    accuracy (first best on ties) and the per-epoch log (loss, validation balanced accuracy)."""
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    model.to(settings.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    loss_function = nn.CrossEntropyLoss()
    x, y = train
    names = np.array(classes)
    best, best_state, log = -1.0, None, []
    for epoch in range(1, settings.epochs + 1):
        model.train()
        total = 0.0
        for index in torch.randperm(len(x), generator=generator).split(settings.batch_size):
            if len(index) < 2:  # batch norm needs two samples
                continue
            batch, target = x[index].to(settings.device), y[index].to(settings.device)
            loss = loss_function(model(batch), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        probabilities = predict_proba(model, validation[0])
        scores = classification_metrics(names[validation[1].numpy()], names[probabilities.argmax(1)],
                                        probabilities[:, 1], positive=classes[1])
        log.append({"epoch": epoch, "train_loss": total / len(x), "val_balanced_accuracy": scores["balanced_accuracy"]})
        if scores["balanced_accuracy"] > best:
            best, best_state = scores["balanced_accuracy"], copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return model.eval(), log
