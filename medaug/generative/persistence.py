"""Save / load a generator as a folder: ``config.json``, ``model.pt`` (state dict), ``provenance.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from medaug import __version__
from medaug.errors import InputDataError
from medaug.generative.config import GeneratorConfig
from medaug.generative.models import GenerativeModel, build_model
from medaug.io import atomic_write, write_json
from medaug.provenance import PROVENANCE_FILE


def save_generator(model: nn.Module, folder: str | os.PathLike, provenance: dict | None = None,
                   state_dict: dict | None = None) -> Path:
    """Write the model folder atomically file by file (weights last but one, provenance last);
    ``state_dict`` replaces the model's current weights (a best epoch kept in memory)."""
    folder = Path(folder)
    write_json(folder / "config.json", model.config.to_dict())
    state = {k: v.detach().cpu() for k, v in (state_dict or model.state_dict()).items()}
    atomic_write(folder / "model.pt", lambda p: torch.save(state, p))
    write_json(folder / PROVENANCE_FILE, {"medaug_version": __version__, "torch_version": torch.__version__,
                                          **(provenance or {})})
    return folder


def load_generator(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> GenerativeModel:
    """Rebuild the model from ``config.json`` and load ``model.pt`` with ``weights_only=True``."""
    return load_model_folder(folder, lambda config: build_model(GeneratorConfig.from_dict(config)), map_location)


def load_model_folder(folder: str | os.PathLike, build: Callable[[dict], nn.Module],
                      map_location: str | torch.device = "cpu") -> nn.Module:
    """A model saved by :func:`save_generator`: ``build(config dict)`` then the weights (weights_only)."""
    folder = Path(folder)
    for name in ("config.json", "model.pt"):
        if not (folder / name).is_file():
            raise InputDataError(f"{folder} is not a saved model folder: {name} is missing")
    model = build(json.loads((folder / "config.json").read_text()))
    model.load_state_dict(torch.load(folder / "model.pt", map_location=map_location, weights_only=True))
    return model.to(map_location).eval()
