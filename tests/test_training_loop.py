"""The one training loop (medaug.training): early stopping on scripted scores, divergence, exact
resume from a checkpoint, and the settings fingerprint that guards it."""

import math

import pytest
import torch
from torch import nn

from medaug.errors import ConfigError, MedaugError, TrainingDivergedError
from medaug.training import Hooks, LoopConfig, TrainingLoop, fingerprint


def _toy(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.3), nn.Linear(8, 1))  # dropout draws global random numbers


def _data():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(20, 3, generator=generator)
    return x, x.sum(1, keepdim=True) + 0.1 * torch.randn(20, 1, generator=generator)


def _hooks(model, generator, scores=None, **changes):
    """Shuffled batches from ``generator``; validation from ``scores`` (epoch → score) or the MSE."""
    x, y = _data()

    def batches(epoch):
        for index in torch.randperm(len(x), generator=generator).split(6):
            yield x[index], y[index]

    def validate(epoch):
        if scores is not None:
            return scores[epoch - 1]
        model.eval()
        with torch.no_grad():
            return nn.functional.mse_loss(model(x), y).item()

    options = {"train_step": lambda batch: nn.functional.mse_loss(model(batch[0]), batch[1]), "validate": validate}
    return Hooks(batches=batches, **{**options, **changes})


def _run(model, scores=None, *, seed=3, epochs=6, hooks=None, **options):
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    config = LoopConfig(**{"max_epochs": epochs, "progress": None, **options.pop("config", {})})
    return TrainingLoop(model, optimizer, hooks or _hooks(model, generator, scores), config,
                        generators=[generator], **options).run()


def test_early_stopping_stops_after_patience_epochs_without_a_better_score_and_keeps_the_best():
    model = _toy()
    weights = {}
    scores = [5.0, 4.0, 4.5, 3.0, 3.0, 3.2, 2.0, 1.0]  # a tie (epoch 5) is no improvement

    def validate(epoch):
        weights[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        return scores[epoch - 1]

    generator = torch.Generator().manual_seed(0)
    hooks = _hooks(model, generator)
    hooks.validate = validate
    result = _run(model, hooks=hooks, epochs=8, config={"patience": 2, "columns": ("epoch", "val_loss", "best_val_loss")})
    assert (result.epochs, result.best_epoch, result.best_score) == (6, 4, 3.0)
    assert [row["epoch"] for row in result.log] == [1, 2, 3, 4, 5, 6]
    assert [row["best_val_loss"] for row in result.log] == [5.0, 4.0, 4.0, 3.0, 3.0, 3.0]
    for key, value in model.state_dict().items():  # the weights of epoch 4 are back in the model
        assert torch.equal(value, weights[4][key]), key


def test_a_metric_keeps_its_first_best_epoch_and_runs_every_epoch_without_patience():
    result = _run(_toy(), [0.5, 0.75, 0.75, 0.6], epochs=4,
                  config={"higher_is_better": True, "score": "accuracy", "columns": ("epoch", "accuracy")})
    assert (result.epochs, result.best_epoch, result.best_score) == (4, 2, 0.75)
    assert result.log == [{"epoch": e, "accuracy": s} for e, s in zip(range(1, 5), [0.5, 0.75, 0.75, 0.6])]


def test_a_non_finite_loss_or_score_raises_the_medaug_error_naming_the_epoch():
    model = _toy()
    calls, at_bad_step = [], {}

    def train_step(batch):
        calls.append(None)
        loss = nn.functional.mse_loss(model(batch[0]), batch[1])
        if len(calls) == 6:  # the second epoch's third step
            at_bad_step.update({k: v.clone() for k, v in model.state_dict().items()})
            return loss * math.nan
        return loss

    hooks = _hooks(model, torch.Generator().manual_seed(0), train_step=train_step)
    with pytest.raises(TrainingDivergedError, match=r"training loss \(nan\) at epoch 2 \(best epoch so far: 1\); "
                                                    "lower the learning rate"):
        _run(model, hooks=hooks)
    assert issubclass(TrainingDivergedError, MedaugError)
    for key, value in model.state_dict().items():  # the non-finite step was not applied
        assert torch.equal(value, at_bad_step[key]), key
    with pytest.raises(TrainingDivergedError, match=r"validation score \(val_loss = inf\) at epoch 3 .*; try again"):
        _run(_toy(), [2.0, 1.0, math.inf], config={"advice": "try again"})
    saved, model = [], _toy()
    hooks = _hooks(model, torch.Generator().manual_seed(0), [2.0, 1.0, math.nan, 0.5],
                   save_best=lambda weights, epoch, score: saved.append((epoch, score)))
    with pytest.raises(TrainingDivergedError, match=r"at epoch 3 \(best epoch so far: 2\)"):
        _run(model, hooks=hooks, config={"checkpoint_minutes": 60.0})  # no write before the error
    assert saved == [(2, 1.0)]  # the best weights are handed over before the error


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    settings = {"model": "toy", "learning_rate": 1e-2}

    def run(folder, epochs, **options):
        model = _toy()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 2, 0.5)
        generator = torch.Generator().manual_seed(3)
        config = LoopConfig(max_epochs=epochs, progress=None, columns=("epoch", "val_loss", "best_val_loss"))
        result = TrainingLoop(model, optimizer, _hooks(model, generator), config, scheduler=scheduler,
                              generators=[generator], checkpoint=folder / "checkpoint.pt", settings=settings,
                              log=folder / "log.tsv", **options).run()
        return model, optimizer, result, torch.rand(2)

    straight, straight_optimizer, straight_result, straight_next = run(tmp_path / "a", 6)
    run(tmp_path / "b", 3)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["loop"]["epoch"] == 3
    resumed, resumed_optimizer, resumed_result, resumed_next = run(tmp_path / "b", 6)
    assert resumed_result == straight_result and len(resumed_result.log) == 6
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert torch.equal(resumed_optimizer.state_dict()["state"][0]["exp_avg"],
                       straight_optimizer.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(resumed_next, straight_next)  # the global random stream continues where it was
    assert (tmp_path / "b" / "log.tsv").read_text() == (tmp_path / "a" / "log.tsv").read_text()
    assert (tmp_path / "a" / "log.tsv").read_text().splitlines()[0] == "epoch\tval_loss\tbest_val_loss"
    finished, _, finished_result, _ = run(tmp_path / "b", 6)  # a finished run resumes and stops at once
    assert finished_result == straight_result
    for key, value in straight.state_dict().items():  # the best weights travel in the checkpoint
        assert torch.equal(finished.state_dict()[key], value), key


def test_a_checkpoint_written_with_other_settings_is_refused_naming_the_folder_and_the_change(tmp_path):
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    _run(_toy(), epochs=2, checkpoint=checkpoint, settings={"training": {"batch_size": 6, "seed": 3}})
    with pytest.raises(ConfigError, match=r"run holds a training with other settings \(training.batch_size: 6 → 8\)"):
        _run(_toy(), epochs=4, checkpoint=checkpoint, settings={"training": {"batch_size": 8, "seed": 3}})
    _run(_toy(), epochs=3, checkpoint=checkpoint, settings={"training": {"seed": 3, "batch_size": 6}})  # key order
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": (1, 2), "a": 1}) != fingerprint({"a": 2, "b": [1, 2]})
    torch.save({"model": {}}, checkpoint)  # an older checkpoint without its settings
    with pytest.raises(ConfigError, match="without its settings"):
        _run(_toy(), checkpoint=checkpoint, settings={})


def test_loop_settings_are_checked():
    with pytest.raises(ConfigError, match="unknown column"):
        LoopConfig(max_epochs=2, columns=("epoch", "accuracy"))
    with pytest.raises(ConfigError, match="patience"):
        LoopConfig(max_epochs=2, patience=0)
    with pytest.raises(ConfigError, match="max_epochs"):
        LoopConfig(max_epochs=0)


def test_the_trajectory_model_resumes_exactly(tmp_path):
    from test_longitudinal import _linear_population

    from medaug.longitudinal.sequences import build_sequences
    from medaug.longitudinal.trajectory import FeatureTrajectoryModel, TrajectoryConfig, train_trajectory_model

    rows, values = _linear_population(12, 0, visits=4, features=3)
    sequences, _ = build_sequences(rows, values)

    def fit(epochs, checkpoint=None):
        torch.manual_seed(0)
        model = FeatureTrajectoryModel(TrajectoryConfig(feature_dim=3, trajectory_dim=2, hidden=8, rnn_layers=1))
        return train_trajectory_model(model, sequences, sequences, epochs=epochs, batch_size=5, visit_dropout=0.3,
                                      seed=1, checkpoint=checkpoint)

    straight, log = fit(4)
    fit(2, tmp_path / "trajectory.pt")
    resumed, resumed_log = fit(4, tmp_path / "trajectory.pt")
    assert resumed_log == log
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
