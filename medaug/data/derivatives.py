"""BIDS-derivative outputs: dataset description, entity-ordered names, images with provenance.

Every image is written atomically next to a JSON sidecar that records what produced it
(``GeneratedBy``, ``Sources``, parameters). A derivative folder never lies inside one of its
source datasets and never overwrites a source file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from medaug import __version__
from medaug.errors import ConfigError, OutputExistsError
from medaug.io import write_json, write_nifti

BIDS_VERSION = "1.10.0"
# BIDS entity order (subset used for anatomical derivatives), from the specification's entity table.
ENTITY_ORDER = ("sub", "ses", "acq", "ce", "rec", "run", "space", "res", "den", "desc")


def generated_by(description: str) -> list[dict]:
    """The ``GeneratedBy`` entry naming this package and version."""
    return [{"Name": "medaug", "Version": __version__, "Description": description}]


def bids_name(suffix: str, extension: str, **entities: str | None) -> str:
    """``sub-X_ses-Y_..._desc-Z_<suffix><extension>`` with entities in BIDS order (None skipped)."""
    unknown = set(entities) - set(ENTITY_ORDER)
    if unknown:
        raise ConfigError(f"unsupported BIDS entities {sorted(unknown)}; use {', '.join(ENTITY_ORDER)}")
    for key, value in entities.items():
        if value is not None and not str(value).isalnum():
            raise ConfigError(f"BIDS label {key}-{value} must be alphanumeric")
    parts = [f"{key}-{entities[key]}" for key in ENTITY_ORDER if entities.get(key) is not None]
    return "_".join(parts + [suffix]) + extension


def sidecar_path(image_path: str | os.PathLike) -> Path:
    """The JSON sidecar next to an image: ``x_T1w.nii.gz`` → ``x_T1w.json``."""
    image_path = Path(image_path)
    return image_path.with_name(image_path.name.split(".")[0] + ".json")


class DerivativeDataset:
    """A BIDS-derivative folder written by one medaug pipeline.

    Creating it writes ``dataset_description.json`` (``DatasetType: derivative``, ``GeneratedBy``,
    ``SourceDatasets``); reopening a folder made by another pipeline is refused.
    """

    def __init__(self, root: str | os.PathLike, name: str, sources: Sequence[str | os.PathLike] = (),
                 description: str = "") -> None:
        self.root = Path(root).resolve()
        self.sources = [Path(s).resolve() for s in sources]
        for source in self.sources:
            if self.root == source or self.root.is_relative_to(source) or source.is_relative_to(self.root):
                raise ConfigError(f"output {self.root} overlaps the input dataset {source}; "
                                  "write derivatives to a separate folder")
        self.name = name
        description_path = self.root / "dataset_description.json"
        if description_path.exists():
            existing = json.loads(description_path.read_text())
            if existing.get("Name") != name or existing.get("DatasetType") != "derivative":
                raise OutputExistsError(f"{self.root} already holds dataset {existing.get('Name')!r}; "
                                        f"choose another output folder for {name!r}")
        else:
            write_json(description_path, {
                "Name": name, "BIDSVersion": BIDS_VERSION, "DatasetType": "derivative",
                "GeneratedBy": generated_by(description or name),
                "SourceDatasets": [{"URL": source.as_uri()} for source in self.sources]})

    def path(self, participant_id: str, session_id: str | None, suffix: str = "T1w",
             extension: str = ".nii.gz", datatype: str = "anat", **entities: str | None) -> Path:
        """Path of one file, e.g. ``sub-01/ses-M000/anat/sub-01_ses-M000_desc-synthetic_T1w.nii.gz``."""
        sub = participant_id.removeprefix("sub-")
        ses = session_id.removeprefix("ses-") if session_id else None
        folder = self.root / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / datatype
        return folder / bids_name(suffix, extension, sub=sub, ses=ses, **entities)

    def write_image(self, path: str | os.PathLike, data: np.ndarray | torch.Tensor, affine: np.ndarray,
                    provenance: Mapping[str, object], sources: Sequence[str | os.PathLike] = (),
                    skull_stripped: bool = False) -> Path:
        """Atomically write a float32 NIfTI with ``affine`` and its JSON sidecar.

        The sidecar holds ``provenance`` plus ``SkullStripped`` (required for derivative MRI),
        ``GeneratedBy`` and ``Sources`` (``file:`` URIs of the inputs). Writing onto a source file
        is refused.
        """
        path = Path(path).resolve()
        if not path.is_relative_to(self.root):
            raise ConfigError(f"{path} is outside the derivative dataset {self.root}")
        resolved_sources = [Path(s).resolve() for s in sources]
        if path in resolved_sources:
            raise OutputExistsError(f"refusing to overwrite the input image {path}")
        array = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        image = nib.Nifti1Image(array.astype(np.float32), np.asarray(affine, dtype=np.float64))
        image.header.set_xyzt_units("mm")
        write_nifti(path, image)
        sidecar = {"SkullStripped": skull_stripped, **provenance, "GeneratedBy": generated_by(self.name),
                   "Sources": [s.as_uri() for s in resolved_sources]}
        write_json(sidecar_path(path), sidecar)
        return path
