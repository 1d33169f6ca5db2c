import numpy as np
import torch

from medaug.nets.classifiers import Conv5FC3
from medaug.study.network_training import ClassifierTraining, predict_proba, train_classifier
from medaug.study.metrics import classification_metrics


def _blobs(n, seed):
    """Class AD has a bright blob in one corner, CN in the other; plus noise."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.rand(n, 1, 16, 16, 16, generator=g)
    y = torch.arange(n) % 2
    x[y == 1, :, 2:6, 2:6, 2:6] += 1.0
    x[y == 0, :, 10:14, 10:14, 10:14] += 1.0
    return x, y


def test_conv5_fc3_is_sized_from_the_input_shape():
    big = Conv5FC3((1, 169, 208, 179))
    assert big.classifier[1].out_features == 1300 and big.classifier[3].out_features == 50
    small = Conv5FC3((1, 84, 104, 89))
    assert small.classifier[1].in_features == 128 * 2 * 3 * 2
    assert Conv5FC3((1, 16, 20, 16))(torch.rand(3, 1, 16, 20, 16)).shape == (3, 2)
    assert Conv5FC3((1, 28, 28))(torch.rand(2, 1, 28, 28)).shape == (2, 2)


def test_classifier_learns_and_keeps_the_best_validation_epoch():
    train, validation, test = _blobs(24, 0), _blobs(12, 1), _blobs(20, 2)
    torch.manual_seed(0)
    model, log = train_classifier(Conv5FC3((1, 16, 16, 16)), train, validation,
                                  ClassifierTraining(epochs=8, learning_rate=3e-3, batch_size=6))
    assert len(log) == 8
    probabilities = predict_proba(model, test[0])
    names = np.array(["CN", "AD"])
    scores = classification_metrics(names[test[1].numpy()], names[probabilities.argmax(1)], probabilities[:, 1])
    assert scores["balanced_accuracy"] >= 0.9
    best_logged = max(row["val_balanced_accuracy"] for row in log)
    val_probabilities = predict_proba(model, validation[0])
    restored = classification_metrics(names[validation[1].numpy()], names[val_probabilities.argmax(1)])
    assert restored["balanced_accuracy"] == best_logged


def test_images_held_in_device_memory_train_exactly_like_streamed_images(tmp_path):
    from medaug.data.volumes import VolumeFile, Volumes, write_volume_file

    train, validation = _blobs(20, 0), _blobs(10, 1)
    write_volume_file(tmp_path / "train.npy", [train[0]], train[0].shape)
    streamed = (Volumes.of(VolumeFile(tmp_path / "train.npy")), train[1])
    runs = []
    for on_device in (False, True):
        torch.manual_seed(0)
        settings = ClassifierTraining(epochs=3, learning_rate=3e-3, batch_size=6, images_on_device=on_device)
        runs.append(train_classifier(Conv5FC3((1, 16, 16, 16)), streamed, validation, settings))
    assert runs[0][1] == runs[1][1]
    for key, value in runs[0][0].state_dict().items():
        assert torch.equal(runs[1][0].state_dict()[key], value), key
