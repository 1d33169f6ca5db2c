"""Atomic file writing: write to a temporary file in the same folder, then rename.

A crash never leaves a half-written output under its final name.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import pandas as pd

from medaug.errors import ConfigError, InputDataError

ATOMIC_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")  # the temporary names atomic_write uses
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move the temporary file onto ``path``.

    The temporary name keeps the full suffix of ``path`` (``.nii.gz``, ``.tsv``) so that writers
    that pick a format from the extension behave as for the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write a text file (UTF-8)."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Atomically write ``data`` as indented JSON with a trailing newline."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_tsv(path: str | os.PathLike, table: pd.DataFrame) -> Path:
    """Atomically write a tab-separated table without index, missing values as ``n/a`` (BIDS)."""
    return atomic_write(path, lambda p: table.to_csv(p, sep="\t", index=False, na_rep="n/a"))


def write_nifti(path: str | os.PathLike, image: nib.Nifti1Image) -> Path:
    """Atomically save a NIfTI image (nibabel writes deterministic gzip streams)."""
    return atomic_write(path, lambda p: nib.save(image, p))


def write_torch(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically ``torch.save`` ``obj``, serialised in memory first: torch reports a full disk as
    an unexplained RuntimeError, a plain write as the OSError it is."""
    import torch  # here: the other writers must not pay for importing torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, lambda p: p.write_bytes(buffer.getbuffer()))


def read_torch(path: str | os.PathLike, fix: str, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` of ``path``; an unsafe pickle or a damaged file raises
    :class:`~medaug.errors.InputDataError` naming the file and ending with ``fix`` (permissions: the
    :class:`OSError`)."""
    import pickle

    import torch

    with Path(path).open("rb") as file:
        try:
            return torch.load(file, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:
            raise InputDataError(f"{path} was refused by torch.load(weights_only=True): it holds objects other than "
                                 f"tensors (an unsafe pickle, or not a checkpoint); {fix}") from None
        except Exception:  # noqa: BLE001 (a damaged file fails in many ways: EOFError, KeyError, RuntimeError)
            raise InputDataError(f"{path} is not a readable PyTorch checkpoint (truncated, or another kind of "
                                 f"file); {fix}") from None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def read_yaml(path: str | os.PathLike, fix: str) -> Any:
    """A settings file read with ``yaml.safe_load``; a missing, non-UTF-8 (binary) or invalid file
    raises :class:`~medaug.errors.ConfigError` in one line naming it and ending with ``fix``."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found; {fix}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text (byte 0x{error.object[error.start:error.start + 1].hex()} at "
                          f"offset {error.start}: a binary file?); {fix}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML ({_one_line(error)}); {fix}") from None


def read_table(path: str | os.PathLike, fix: str, **options: Any) -> pd.DataFrame:
    """A tab-separated text table (``pandas.read_csv(sep="\\t", **options)``); a non-UTF-8 (binary),
    empty or malformed file raises :class:`~medaug.errors.InputDataError` in one line naming it and
    ending with ``fix``."""
    try:
        return pd.read_csv(path, sep="\t", encoding="utf-8", **options)
    except UnicodeDecodeError as error:
        raise InputDataError(f"{path} is not UTF-8 text (byte 0x{error.object[error.start:error.start + 1].hex()}: "
                             f"a binary file?); {fix}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InputDataError(f"{path} is not a tab-separated table ({_one_line(error)}); {fix}") from None
