"""The one image loader (file → tensor of a given size in [0, 1]) and the generator provenance schema."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from medaug.data.dataset import LoadT1wd
from medaug.errors import InputDataError
from medaug.generative.training_data import record_training_data
from medaug.preprocessing.images import image_stream, image_tensor, load_resized, resized_affine
from medaug.preprocessing.pipeline import output_transforms
from medaug.provenance import PROVENANCE_FILE, GeneratorProvenance, LongitudinalProvenance, read_json_object


@pytest.fixture
def las_images(tmp_path):
    """Two LAS-oriented, anisotropic images (the loader reorients them to RAS)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        path = tmp_path / f"img{i}.nii.gz"
        nib.save(nib.Nifti1Image((rng.random((11, 9, 7)) * 900 + i).astype(np.float32),
                                 np.diag([-1.5, 1.2, 2.0, 1.0])), path)
        paths.append(str(path))
    return paths


def test_images_are_the_preprocessing_output_transforms_of_the_checked_file(las_images):
    size = (6, 5, 4)
    expected = [output_transforms(size)(LoadT1wd()({"image": p}))["image"] for p in las_images]
    stacked = image_tensor(las_images, size)
    assert stacked.shape == (2, 1, *size) and stacked.dtype == torch.float32
    assert float(stacked.min()) == 0.0 and float(stacked.max()) == 1.0
    for image, reference in zip(stacked, expected):
        torch.testing.assert_close(image, reference.as_tensor(), rtol=0, atol=0)
    table = pd.DataFrame({"participant_id": ["a", "b"], "path": las_images})
    torch.testing.assert_close(torch.stack(list(image_stream(table, size))), stacked, rtol=0, atol=0)
    np.testing.assert_array_equal(resized_affine(table, size), expected[0].affine.numpy())
    assert load_resized(las_images[0], None).shape == (1, 11, 9, 7)  # no size: min-max only
    with pytest.raises(InputDataError, match="empty"):
        image_tensor([], size)
    with pytest.raises(InputDataError, match="does not exist"):
        image_tensor([las_images[0] + ".missing"], size)


def _partial(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PROVENANCE_FILE).write_text(json.dumps({"medaug_version": "0", "torch_version": "t", "epoch": 3,
                                                      "val_loss": 1.5, "trainer": {"seed": 0}}, indent=2) + "\n")


def test_provenance_round_trips_byte_for_byte_and_names_the_fix(tmp_path, las_images):
    folder = tmp_path / "best"
    _partial(folder)
    with pytest.raises(InputDataError, match="records no label, train_images.*did not finish.*rerun "
                                             "`medaug train-generator` with the same arguments to resume it"):
        GeneratorProvenance.read(folder)
    assert not GeneratorProvenance.is_finished(folder) and not GeneratorProvenance.is_finished(tmp_path / "none")
    rows = pd.DataFrame({"participant_id": ["a", "b"], "path": las_images})
    record_training_data(folder, "AD", rows.head(1), rows.tail(1), (6, 5, 4), source="cohort.tsv")
    text = (folder / PROVENANCE_FILE).read_text()
    assert list(json.loads(text)) == ["medaug_version", "torch_version", "epoch", "val_loss", "trainer", "label",
                                      "train_images", "train_participants", "validation_images",
                                      "training_set_sha256", "image_affine", "source"]
    provenance = GeneratorProvenance.read(folder)
    assert provenance.finished and GeneratorProvenance.is_finished(folder)
    assert provenance.label == "AD" and provenance.train_images == las_images[:1] and provenance.epoch == 3
    assert provenance.validation_images == las_images[1:] and provenance.source == "cohort.tsv"
    np.testing.assert_array_equal(provenance.affine, resized_affine(las_images, (6, 5, 4)))
    provenance.write(folder)
    assert (folder / PROVENANCE_FILE).read_text() == text  # same keys, same order, same bytes
    data = {**json.loads(text), "future_key": [1, 2]}
    assert GeneratorProvenance.from_dict(data).to_dict() == data  # unknown keys are kept, last
    assert provenance.sidecar_fields(folder, "rhvae")["TrainingSetSHA256"] == provenance.training_set_sha256

    (folder / PROVENANCE_FILE).write_text(text[:40])  # truncated
    with pytest.raises(InputDataError, match=r"provenance.json is not valid JSON .*train the generator again"):
        GeneratorProvenance.read(folder)
    (folder / PROVENANCE_FILE).write_text(json.dumps({**json.loads(text), "image_affine": [[1, 0], [0, 1]]}))
    with pytest.raises(InputDataError, match="image_affine must be a 4×4 matrix"):
        GeneratorProvenance.read(folder)
    (folder / PROVENANCE_FILE).unlink()
    with pytest.raises(InputDataError, match="provenance.json not found.*holds no trained generator"):
        GeneratorProvenance.read(folder)
    with pytest.raises(InputDataError, match=r"holds a JSON list, not an object; fix it"):
        (tmp_path / "list.json").write_text("[]")
        read_json_object(tmp_path / "list.json", "fix it")


def test_longitudinal_provenance_requires_its_own_keys(tmp_path):
    (tmp_path / PROVENANCE_FILE).write_text(json.dumps({"label": "AD", "train_images": ["a"],
                                                        "training_set_sha256": "x", "image_affine": np.eye(4).tolist()}))
    assert GeneratorProvenance.read(tmp_path).finished
    with pytest.raises(InputDataError, match="records no interval_years, baseline_ages.*`medaug longitudinal fit`"):
        LongitudinalProvenance.read(tmp_path)


def test_generate_refuses_a_generator_whose_training_did_not_finish(tmp_path, capsys):
    from medaug.cli import main
    from medaug.generative.config import GeneratorConfig
    from medaug.generative.models import build_model
    from medaug.generative.persistence import save_generator

    model = build_model(GeneratorConfig(input_shape=(1, 4, 3, 2), model="vae", latent_dim=2, hidden=(16,)))
    save_generator(model, tmp_path / "gen" / "best", {"epoch": 1, "val_loss": 2.0, "trainer": {}})
    assert main(["generate", str(tmp_path / "gen"), "--sampler", "prior", "-n", "1", "--out", str(tmp_path / "o")]) == 2
    assert "rerun `medaug train-generator` with the same arguments to resume it" in capsys.readouterr().err
