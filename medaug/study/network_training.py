"""Train a classifier with model selection on the best validation balanced accuracy (thesis §1.5.5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from medaug.compute import autocast, conv_layout, cudnn_autotune, resolve_device, to_device
from medaug.data.volumes import Volumes
from medaug.distributed import data_parallel, replica
from medaug.configuration import Config, check_device, check_seed
from medaug.errors import ConfigError
from medaug.study.metrics import classification_metrics
from medaug.training import Hooks, LoopConfig, TrainingLoop


@dataclass
class ClassifierTraining(Config):
    """Settings of one classifier run (thesis baseline: 100 epochs, Adam)."""

    section: ClassVar[str] = 'classifier_training'

    epochs: int = 100
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 8
    seed: int = 0
    device: str = "cpu"
    mixed_precision: bool = False   # bf16 autocast (CUDA or CPU)
    loader_workers: int = 0         # DataLoader processes reading the images (0: in the training process)
    images_on_device: bool = False  # hold training and validation images in device memory (float16 under mixed precision)
    cudnn_autotune: bool = True     # CUDA: time cuDNN's convolution algorithms once per shape, keep the fastest
    channels_last: bool = False     # CUDA: 3D convolutions in the NDHWC layout (faster tensor-core kernels in bf16)

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.learning_rate <= 0 or self.weight_decay < 0:
            raise ConfigError("classifier training needs epochs ≥ 1, batch_size ≥ 2 (batch norm), "
                              "learning_rate > 0 and weight_decay ≥ 0")
        if self.loader_workers < 0:
            raise ConfigError(f"loader_workers must be ≥ 0, got {self.loader_workers}")
        check_device(self.device, f"{self.section}.device")
        check_seed(self.seed, f"{self.section}.seed")


def predict_proba(model: nn.Module, images: torch.Tensor | Volumes, batch_size: int = 16,
                  mixed_precision: bool = False, channels_last: bool = False) -> np.ndarray:
    """Softmax class probabilities (N, classes) in evaluation mode, on the model's device; images
    are read batch by batch (a tensor, possibly already on the device, or streamed :class:`Volumes`)."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad(), autocast(device, mixed_precision):
        return torch.cat([torch.softmax(model(conv_layout(to_device(part, device).float(), channels_last)).float(),
                                        dim=1).cpu()
                          for part in Volumes.of(images).batches(batch_size)]).numpy()


def _epoch_batches(images: Volumes | torch.Tensor, batches: list[torch.Tensor], settings: ClassifierTraining,
                   device: torch.device):
    """The images of each batch (this process's share of it), in the order drawn for this epoch:
    indexed in device memory, or read through a DataLoader (pinned memory on CUDA)."""
    if isinstance(images, torch.Tensor):
        return (images[index.to(device)] for index in batches)
    # its own generator: the loader's worker seed must not draw from the global stream (dropout's)
    return DataLoader(images, batch_sampler=[index.tolist() for index in batches], generator=torch.Generator(),
                      num_workers=settings.loader_workers, pin_memory=device.type == "cuda")


def _resident(images: torch.Tensor | Volumes, device: torch.device, settings: ClassifierTraining):
    """``images`` in device memory when ``images_on_device`` is set (float16 under bf16 autocast,
    which rounds inputs further anyway), else the streamed collection."""
    images = Volumes.of(images)
    if not settings.images_on_device:
        return images
    return images.on_device(device, torch.float16 if settings.mixed_precision and device.type == "cuda" else torch.float32)


def train_classifier(model: nn.Module, train: tuple[torch.Tensor | Volumes, torch.Tensor],
                     validation: tuple[torch.Tensor | Volumes, torch.Tensor], settings: ClassifierTraining,
                     classes: tuple[str, str] = ("CN", "AD")) -> tuple[nn.Module, list[dict]]:
    """Cross-entropy training (:mod:`medaug.training`'s loop); returns the weights of the epoch
    with the best validation balanced accuracy (first best on ties) and the per-epoch log (loss,
    validation balanced accuracy). Images stream from ``train[0]`` through a DataLoader (pinned
    memory on CUDA), or are held in device memory with ``images_on_device``. Under
    ``torchrun`` each process trains on its share of every batch with DDP (batch norm synchronised
    on CUDA); all score the whole validation set and return the same weights."""
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    group = replica(resolve_device(settings.device))
    device = group.device
    layout = settings.channels_last and device.type == "cuda"
    model.to(device, memory_format=torch.channels_last_3d if layout else torch.preserve_format)
    network = data_parallel(model, group)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    x, y = _resident(train[0], device, settings), train[1]
    validation_images = _resident(validation[0], device, settings)
    names = np.array(classes)
    steps: list[tuple[torch.Tensor, int]] = []  # this epoch's losses and batch sizes (this process's share)

    def batches(epoch: int):
        """(indices, images) of each batch in a seeded random order; a last batch of one image per
        process is dropped: batch norm needs two samples."""
        order = [group.shard(i) for i in torch.randperm(len(x), generator=generator).split(settings.batch_size)
                 if len(i) >= 2 * group.world_size]
        return zip(order, _epoch_batches(x, order, settings, device))

    def train_step(batch) -> torch.Tensor:
        index, images = batch
        images, target = conv_layout(to_device(images, device).float(), layout), to_device(y[index], device)
        with autocast(device, settings.mixed_precision):
            loss = nn.functional.cross_entropy(network(images).float(), target)
        steps.append((loss.detach(), len(index)))
        return loss

    def train_loss() -> float:
        """The mean cross-entropy of the epoch, summed on the device (no host sync per step)."""
        total = torch.zeros((), device=device)
        for loss, n in steps:
            total += group.mean(loss) * n * group.world_size
        steps.clear()
        return total.item() / len(x)

    def validate(epoch: int) -> float:
        group.share_buffers(model)  # the replicas score validation with the same statistics
        probabilities = predict_proba(model, validation_images, mixed_precision=settings.mixed_precision,
                                      channels_last=layout)
        scores = classification_metrics(names[validation[1].numpy()], names[probabilities.argmax(1)],
                                        probabilities[:, 1], positive=classes[1])
        return scores["balanced_accuracy"]

    hooks = Hooks(batches=batches, train_step=train_step, train_loss=train_loss, validate=validate)
    loop = LoopConfig(max_epochs=settings.epochs, higher_is_better=True, score="val_balanced_accuracy",
                      columns=("epoch", "train_loss", "val_balanced_accuracy"), progress=None)
    with cudnn_autotune(settings.cudnn_autotune and device.type == "cuda"):
        result = TrainingLoop(model, optimizer, hooks, loop, group=group).run()
    return model.eval(), result.log
