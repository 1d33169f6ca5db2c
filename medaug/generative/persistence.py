"""Save / load a generator as a folder: ``config.json``, ``model.pt`` (state dict), ``provenance.json``."""

from __future__ import annotations

import hashlib

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from medaug import __version__
from medaug.errors import ConfigError, InputDataError
from medaug.generative.config import GeneratorConfig
from medaug.generative.models import GenerativeModel, build_model
from medaug.io import read_torch, write_json, write_torch
from medaug.provenance import PROVENANCE_FILE, GeneratorProvenance, read_json_object

RESTORE = "restore the file from a copy, or train the model again into a new folder"


def save_generator(model: nn.Module, folder: str | os.PathLike, provenance: dict | None = None,
                   state_dict: dict | None = None) -> Path:
    """Write the model folder atomically file by file (weights last but one, provenance last);
    ``state_dict`` replaces the model's current weights (a best epoch kept in memory)."""
    folder = Path(folder)
    write_json(folder / "config.json", model.config.to_dict())
    state = {k: v.detach().cpu() for k, v in (state_dict or model.state_dict()).items()}
    write_torch(folder / "model.pt", state)
    write_json(folder / PROVENANCE_FILE, {"medaug_version": __version__, "torch_version": torch.__version__,
                                          **(provenance or {})})
    return folder


def weights_sha256(folder: str | os.PathLike) -> str:
    """SHA-256 of a saved model folder's ``model.pt``: what a model trained on top of it records."""
    return hashlib.sha256((Path(folder) / "model.pt").read_bytes()).hexdigest()


def load_generator(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> GenerativeModel:
    """Rebuild the model from ``config.json`` and load ``model.pt`` with ``weights_only=True``."""
    return load_model_folder(folder, lambda config: build_model(GeneratorConfig.from_dict(config)), map_location,
                             fix=f"{RESTORE} with `{GeneratorProvenance.command}`")


def load_model_folder(folder: str | os.PathLike, build: Callable[[dict], nn.Module],
                      map_location: str | torch.device = "cpu", *, fix: str = RESTORE) -> nn.Module:
    """A model saved by :func:`save_generator`: ``build(config dict)`` then the weights (weights_only).

    A missing, truncated, hand-edited or foreign ``config.json`` / ``model.pt`` raises
    :class:`InputDataError` naming the file and ending with ``fix``; an unreadable one (permissions)
    raises its :class:`OSError`."""
    folder = Path(folder)
    for name in ("config.json", "model.pt"):
        if not (folder / name).is_file():
            raise InputDataError(f"{folder} is not a saved model folder: {name} is missing")
    config_path, weights_path = folder / "config.json", folder / "model.pt"
    try:
        model = build(read_json_object(config_path, fix))
    except ConfigError as error:
        raise InputDataError(f"{config_path} is not a valid model configuration ({error}); {fix}") from None
    state = read_torch(weights_path, fix)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as error:
        reason = " ".join(" ".join(str(error).splitlines()[:2]).split())  # the first mismatch
        raise InputDataError(f"{weights_path} does not hold the weights that {config_path} describes "
                             f"({reason}); {fix}") from None
    return model.to(map_location).eval()
