"""Provenance records read through one schema: a trained generator's ``provenance.json`` and the
keys by which a synthetic image's sidecar names its generator.

``provenance.json`` is written in two steps. :func:`~medaug.generative.persistence.save_generator`
writes the versions and, during training, the best epoch (``epoch``, ``train_loss`` or ``val_loss``, ``trainer``);
when training finishes, :func:`~medaug.generative.training_data.record_training_data` adds the
training data (``label``, ``train_images``, ``train_participants``, ``validation_images``,
``training_set_sha256``, ``image_affine``, and ``source`` from ``medaug train-generator``). A file
without the training data belongs to an unfinished training. :class:`GeneratorProvenance` holds
these keys (others are kept in ``extra``) and writes them back in the same order, so a folder
read and written again is byte for byte the same. :class:`LongitudinalProvenance` adds the keys of
``medaug longitudinal fit`` models.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medaug.errors import InputDataError
from medaug.io import write_json

PROVENANCE_FILE = "provenance.json"


def read_json_object(path: str | os.PathLike, fix: str) -> dict:
    """A JSON object from ``path``; a missing file, invalid (for instance truncated) JSON or
    another JSON value raises :class:`InputDataError` naming the file and ending with ``fix``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputDataError(f"{path} not found; {fix}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputDataError(f"cannot read {path} ({error}); {fix}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputDataError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}; "
                             f"a truncated or hand-edited file); {fix}") from None
    if not isinstance(data, dict):
        raise InputDataError(f"{path} holds a JSON {type(data).__name__}, not an object; {fix}")
    return data


@dataclass(kw_only=True)
class GeneratorProvenance:
    """The ``provenance.json`` of a generator folder (``best/`` of ``medaug train-generator`` or of a
    study's ``generators/<label>/``). Fields in the order they are written; ``None``: not recorded."""

    command: ClassVar[str] = "medaug train-generator"
    required: ClassVar[tuple[str, ...]] = ("label", "train_images", "training_set_sha256", "image_affine")

    # with the weights (save_generator; epoch, the selecting loss and trainer from train_generator)
    medaug_version: str | None = None
    torch_version: str | None = None
    epoch: int | None = None
    train_loss: float | None = None   # trainer.selection: train
    val_loss: float | None = None     # trainer.selection: validation
    trainer: dict | None = None
    # when training finished (record_training_data)
    label: str | None = None
    train_images: list[str] | None = None
    train_participants: list[str] | None = None
    validation_images: list[str] | None = None
    training_set_sha256: str | None = None
    image_affine: list[list[float]] | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys outside the schema, written last

    @classmethod
    def from_dict(cls, data: dict) -> GeneratorProvenance:
        names = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in names},
                   extra={k: v for k, v in data.items() if k not in names})

    def to_dict(self) -> dict:
        """The JSON object: recorded fields in schema order, then ``extra``."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**{k: v for k, v in data.items() if v is not None}, **self.extra}

    @property
    def finished(self) -> bool:
        """Whether the training data is recorded (training finished)."""
        return all(getattr(self, name) is not None for name in self.required)

    @property
    def affine(self) -> np.ndarray:
        """``image_affine`` as a 4×4 float64 array (identity when not recorded)."""
        return np.eye(4) if self.image_affine is None else np.asarray(self.image_affine, dtype=np.float64)

    @classmethod
    def read(cls, model_dir: str | os.PathLike, *, finished: bool = True) -> GeneratorProvenance:
        """``model_dir/provenance.json``; with ``finished`` (the default), also refuses a record
        without the training data. Every failure is an :class:`InputDataError` with the fix."""
        model_dir = Path(model_dir)
        path = model_dir / PROVENANCE_FILE
        restore = f"restore the file from a copy, or train the generator again into a new folder with `{cls.command}`"
        if not path.exists() and (model_dir / "model.pt").exists():
            raise InputDataError(f"{path} not found next to the weights in {model_dir}: without it the training "
                                 f"data and image geometry are unknown; {restore}")
        if not path.exists():
            raise InputDataError(f"{path} not found: {model_dir} holds no trained generator; give the folder that "
                                 f"`{cls.command}` wrote (or its best/), or run `{cls.command}` first")
        record = cls.from_dict(read_json_object(path, restore))
        missing = [name for name in cls.required if getattr(record, name) is None]
        if finished and missing:
            raise InputDataError(f"{path} records no {', '.join(missing)}: the generator's training did not finish "
                                 f"({cls.resume_hint()})")
        record._check(path)
        return record

    @classmethod
    def resume_hint(cls) -> str:
        return (f"rerun `{cls.command}` with the same arguments to resume it, or `medaug run STUDY.yaml` "
                "for a study's generator")

    @classmethod
    def is_finished(cls, model_dir: str | os.PathLike) -> bool:
        """Whether ``model_dir`` holds a provenance record with the training data (a missing file:
        False; an unreadable one raises, as :meth:`read`)."""
        return (Path(model_dir) / PROVENANCE_FILE).exists() and cls.read(model_dir, finished=False).finished

    def write(self, model_dir: str | os.PathLike) -> Path:
        """Atomically write ``model_dir/provenance.json`` (indented JSON, as ``save_generator`` writes it)."""
        return write_json(Path(model_dir) / PROVENANCE_FILE, self.to_dict())

    def sidecar_fields(self, model_dir: str | os.PathLike, model: str) -> dict:
        """The keys by which a synthetic image's sidecar names its generator: ``Generator`` (the
        folder, resolved), ``GeneratorModel`` (the model name) and ``TrainingSetSHA256``."""
        return {"Generator": str(Path(model_dir).resolve()), "GeneratorModel": model,
                "TrainingSetSHA256": self.training_set_sha256}

    def _check(self, path: Path) -> None:
        """Types of the recorded fields (a hand-edited file fails here, not deep inside sampling)."""
        fix = f"restore the file from a copy, or train the generator again with `{self.command}`"
        for name in ("label", "training_set_sha256"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise InputDataError(f"{path}: {name} must be a string, got {value!r:.80}; {fix}")
        for name in ("train_images", "train_participants", "validation_images"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise InputDataError(f"{path}: {name} must be a list of strings, got {value!r:.80}; {fix}")
        if self.image_affine is not None:
            try:
                affine = np.asarray(self.image_affine, dtype=np.float64)
            except (TypeError, ValueError):
                affine = None  # ragged, or not numbers
            if affine is None or affine.shape != (4, 4) or not np.isfinite(affine).all():
                raise InputDataError(f"{path}: image_affine must be a 4×4 matrix of finite numbers, got "
                                     f"{self.image_affine!r:.80}; {fix}")


@dataclass(kw_only=True)
class LongitudinalProvenance(GeneratorProvenance):
    """The ``provenance.json`` of a ``medaug longitudinal fit`` model (written once, when it is fitted)."""

    command: ClassVar[str] = "medaug longitudinal fit"
    required: ClassVar[tuple[str, ...]] = GeneratorProvenance.required + ("interval_years", "baseline_ages")

    interval_years: float | None = None
    training: dict | None = None
    baseline_ages: list[float] | None = None
    first_visit_codes: list[list[float]] | None = None  # absent in models fitted before `--start gmm`
    # the feature-mapping trajectory model (absent: the flow-based VAE)
    longitudinal_model: str | None = None
    visits: int | None = None
    age_range: list[float] | None = None                # youngest, oldest age: t ∈ [0, 1] between them
    trajectory_codes: list[list[float]] | None = None   # training posterior means of λ, for the mixture

    @classmethod
    def resume_hint(cls) -> str:
        return f"fit it again with `{cls.command}`"
