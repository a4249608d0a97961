"""The shared training scaffold (``ml/training/loop.py``) on a toy regression: checkpoints and
log after every epoch, a resumed run equals an uninterrupted one, the session time limit stops
between epochs, and a checkpoint of another recipe or layout is refused."""

from __future__ import annotations

import csv

import pytest
import torch

from fake_clock import Clock
from ml.training import loop as loop_module
from ml.training.campaign import TRAIN_LOG_FILE, TRAIN_STATE_FILE, Campaign
from ml.training.loop import EpochLoop, agree, pick_device, resume

X = torch.linspace(-1, 1, 32).reshape(-1, 1)
Y = 3 * X - 1


class _Toy:
    """A linear model fitted by SGD; an epoch's steps depend only on the seed and the epoch."""

    def __init__(self, width: int = 1) -> None:
        torch.manual_seed(0)
        self.net = torch.nn.Linear(1, width)
        self.optimiser = torch.optim.SGD(self.net.parameters(), lr=0.1, momentum=0.9)
        self.epochs_run: list[int] = []

    def fit(self, epoch: int) -> dict:
        self.epochs_run.append(epoch)
        order = torch.randperm(len(X), generator=torch.Generator().manual_seed(epoch))
        total = 0.0
        for start in range(0, len(X), 8):
            rows = order[start : start + 8]
            loss = torch.nn.functional.mse_loss(self.net(X[rows]), Y[rows])
            self.optimiser.zero_grad()
            loss.backward()
            self.optimiser.step()
            total += float(loss.detach())
        return {"epoch": epoch + 1, "loss": total / 4}

    def state(self) -> dict:
        return {"state_dict": self.net.state_dict(), "optimiser": self.optimiser.state_dict(), "config": {"lr": 0.1}}

    def parts(self) -> dict:
        return {"state_dict": self.net, "optimiser": self.optimiser}


def _same_lr(state: dict) -> None:
    if state["config"] != {"lr": 0.1}:
        raise ValueError("another recipe")


def test_every_epoch_is_logged_and_checkpointed(tmp_path):
    toy = _Toy()
    campaign = Campaign(tmp_path / "run", tmp_path / "model")
    loop = EpochLoop(campaign, epochs=3, keep_every_checkpoint=True)
    assert loop.run(0, toy.fit, toy.state)
    assert [row["epoch"] for row in loop.history] == [1, 2, 3]
    assert loop.history[-1]["loss"] < loop.history[0]["loss"]  # it learns
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["epoch"] == 3 and state["history"] == loop.history
    assert torch.equal(state["state_dict"]["weight"], toy.net.weight)
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert (tmp_path / "model" / TRAIN_STATE_FILE).is_file() and (tmp_path / "model" / TRAIN_LOG_FILE).is_file()


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    whole = _Toy()
    EpochLoop(Campaign(tmp_path / "a"), epochs=4).run(0, whole.fit, whole.state)

    first = _Toy()
    EpochLoop(Campaign(tmp_path / "b"), epochs=2).run(0, first.fit, first.state)  # a session of 2 epochs
    second = _Toy()  # a new process: fresh weights, then the checkpoint
    start, history, _ = resume(Campaign(tmp_path / "b"), "cpu", _same_lr, second.parts())
    assert start == 2 and [row["epoch"] for row in history] == [1, 2]
    loop = EpochLoop(Campaign(tmp_path / "b"), epochs=4, history=history)
    assert loop.run(start, second.fit, second.state)
    assert second.epochs_run == [2, 3]
    assert torch.equal(second.net.weight, whole.net.weight) and torch.equal(second.net.bias, whole.net.bias)
    assert [row["loss"] for row in loop.history] == [row["loss"] for row in
                                                     torch.load(tmp_path / "a" / "last.pt", weights_only=True)["history"]]


def test_resume_refuses_what_does_not_fit(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        resume(Campaign(tmp_path / "empty"), "cpu", _same_lr, _Toy().parts())
    toy = _Toy()
    EpochLoop(Campaign(tmp_path / "run"), epochs=1).run(0, toy.fit, toy.state)

    def other_recipe(state):
        raise ValueError("--resume: another recipe")

    with pytest.raises(ValueError, match="another recipe"):
        resume(Campaign(tmp_path / "run"), "cpu", other_recipe, toy.parts())
    with pytest.raises(ValueError, match="another configuration or model layout"):
        resume(Campaign(tmp_path / "run"), "cpu", _same_lr, _Toy(width=2).parts())  # strict load fails


def test_the_session_stops_between_epochs_once_its_minutes_are_spent(tmp_path, monkeypatch):
    monkeypatch.setattr(loop_module.time, "time", Clock())
    toy = _Toy()
    loop = EpochLoop(Campaign(tmp_path / "run"), epochs=5, max_minutes=1.0)
    # the clock reads 40 s after the start before the second epoch, 80 s before the third: stop there
    assert not loop.run(0, toy.fit, toy.state)
    assert toy.epochs_run == [0, 1] and len(loop.history) == 2
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == 2

    spent = EpochLoop(Campaign(tmp_path / "other"), epochs=2, max_minutes=0.0)
    assert spent.run(1, _Toy().fit, _Toy().state)  # the first epoch of a session always runs
    stopped_inside = EpochLoop(Campaign(tmp_path / "inside"), epochs=2)
    assert not stopped_inside.run(0, lambda epoch: None, toy.state)
    assert stopped_inside.history == [] and not (tmp_path / "inside" / "last.pt").exists()


def test_only_the_main_process_writes(tmp_path):
    toy = _Toy()
    loop = EpochLoop(Campaign(tmp_path / "run"), epochs=2, main=False)
    assert loop.run(0, toy.fit, toy.state)
    assert loop.history == [] and not (tmp_path / "run").exists()


def test_device_and_agreement_of_one_process(monkeypatch):
    assert agree(True, 1, "cpu") is True and agree(False, 1, "cpu") is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert pick_device() == torch.device("cuda", 1)
