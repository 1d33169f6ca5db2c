"""DDP as torchrun runs it, with two CPU processes (gloo): a data-parallel generator step equals the
single-process step on the whole batch; process 0 alone writes; a classifier's replicas agree."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from medaug.generative.config import GeneratorConfig
from medaug.generative.models import build_model
from medaug.generative.trainer import TrainerConfig, train_generator
from medaug.nets.classifiers import Conv5FC3
from medaug.study.network_training import ClassifierTraining, predict_proba, train_classifier

SHAPE = (1, 4, 3, 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _autoencoder():
    """A regularised autoencoder: no sampling noise, so one and two processes see the same loss."""
    torch.manual_seed(0)
    return build_model(GeneratorConfig(input_shape=SHAPE, model="rae_l2", latent_dim=2, hidden=(16,)))


def _data():
    return torch.rand(40, *SHAPE, generator=torch.Generator().manual_seed(1)).round()


def _blobs(n, seed):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = 0.3 * torch.rand(n, 1, 8, 8, 8, generator=generator)
    images[labels == 1, :, 2:6, 2:6, 2:6] += 0.6
    return images, labels


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    data = _data()
    trained = train_generator(_autoencoder(), data[:32], data[32:], os.path.join(folder, "generator"),
                              TrainerConfig(max_steps=12, batch_size=8, learning_rate=1e-2, seed=5))
    torch.save(trained["model"].state_dict(), os.path.join(folder, f"generator_rank{rank}.pt"))
    torch.manual_seed(0)
    network, log = train_classifier(Conv5FC3((1, 8, 8, 8), channels=(4, 8)), _blobs(24, 0), _blobs(12, 1),
                                    ClassifierTraining(epochs=6, learning_rate=3e-3, batch_size=8, seed=2))
    torch.save({"weights": network.state_dict(), "log": log, "test": predict_proba(network, _blobs(20, 2)[0])},
               os.path.join(folder, f"classifier_rank{rank}.pt"))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_and_only_rank_zero_writes(tmp_path):
    data = _data()
    single = train_generator(_autoencoder(), data[:32], data[32:], tmp_path / "single",
                             TrainerConfig(max_steps=12, batch_size=8, learning_rate=1e-2, seed=5))
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"generator_rank{r}.pt", weights_only=True) for r in (0, 1)]
    for key, value in single["model"].state_dict().items():
        # each process took 4 of the 8 images of every batch; DDP averaged the two gradients
        torch.testing.assert_close(ranks[0][key], value, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ranks[1][key], ranks[0][key], atol=0, rtol=0)
    written = sorted(p.name for p in (tmp_path / "generator").iterdir())
    assert written == ["best", "checkpoint.pt", "training_log.csv"]
    assert len((tmp_path / "generator" / "training_log.csv").read_text().splitlines()) == 4

    classifiers = [torch.load(tmp_path / f"classifier_rank{r}.pt", weights_only=False) for r in (0, 1)]
    for key, value in classifiers[0]["weights"].items():
        torch.testing.assert_close(classifiers[1]["weights"][key], value, atol=0, rtol=0)
    assert classifiers[0]["log"] == classifiers[1]["log"]
    labels = _blobs(20, 2)[1].numpy()
    assert (classifiers[0]["test"].argmax(1) == labels).mean() >= 0.9


def test_a_study_under_torchrun_is_refused_with_the_alternative(monkeypatch, tmp_path):
    from medaug.errors import ConfigError
    from medaug.study.config import StudyConfig
    from medaug.study.pipeline import run_study

    monkeypatch.setenv("WORLD_SIZE", "2")
    config = StudyConfig.from_dict({"name": "s", "data": {"bids": str(tmp_path)}, "output": str(tmp_path / "out")})
    with pytest.raises(ConfigError, match="executor: ray"):
        run_study(config)
    assert not (tmp_path / "out").exists()
