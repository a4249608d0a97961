"""The map model's training campaign (``ml/training/cmml.py``, ``ml/training/campaign.py``): the learning-rate
schedule, a stop inside an epoch and its bit-identical resume, resuming a committed campaign from
the model folder on a clean run folder, and refusing another recipe. 150 small real CIFs."""

from __future__ import annotations

import csv
import math
import shutil
from dataclasses import replace

import pytest
import torch

from ml.training.campaign import TRAIN_LOG_FILE, TRAIN_STATE_FILE
from ml.data.datasets import get_dataset
from ml.training.cmml import train
from ml.training.cmml_recipes import TRAIN_CONFIGS, TrainConfig, _sized

pytestmark = pytest.mark.integration


def _config(**kw) -> TrainConfig:
    """A small model; 2 epochs of 9 batches of 16 (138 training materials), warm-up and cosine."""
    return TrainConfig(name="campaign-test", model=_sized(16, 32), batch_size=16, lr=3e-3, warmup_epochs=0.5,
                       final_lr_ratio=0.1, epochs=2, **kw)


def test_the_schedule_warms_up_then_decays_by_a_cosine():
    config = _config()
    n = 10
    rates = [config.learning_rate(e, b, n) for e in range(2) for b in range(n)]
    assert rates[0] == pytest.approx(3e-4)  # lr / 10 at the first step
    assert rates[4] == pytest.approx(3e-4 + 0.9 * 3e-3 * 0.4 / 0.5)  # linear during the warm-up
    assert rates[5] == pytest.approx(3e-3)  # the peak at the end of the warm-up
    assert all(a > b for a, b in zip(rates[5:], rates[6:]))  # then falls every step
    assert config.learning_rate(2, 0, n) == pytest.approx(3e-4)  # lr · final_lr_ratio at the end
    middle = config.learning_rate(1, 5, 20)  # t = 1.25 epochs: half of the decay
    assert middle == pytest.approx(3e-4 + 0.5 * (3e-3 - 3e-4) * (1 + math.cos(math.pi * 0.5)))
    assert TRAIN_CONFIGS["cpu"].learning_rate(7, 3, n) == TRAIN_CONFIGS["cpu"].lr  # constant recipes stay so
    with pytest.raises(ValueError):
        replace(config, final_lr_ratio=0.0)


def _weights(path):
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state["state_dict"]


def test_a_stop_inside_an_epoch_resumes_to_the_same_weights(tiny_cifs, tmp_path, one_torch_thread):
    """Stopped after the first step (a checkpoint after every step, a 0-minute session), then
    resumed from the copy kept beside the model in a fresh run folder (a clean clone), the run
    ends with exactly the weights and losses of an uninterrupted one."""
    dataset = get_dataset(str(tiny_cifs))
    straight = train(dataset, _config(), tmp_path / "run-a", out_model=tmp_path / "a" / "model.pt", processes=1)
    assert straight["finished"] and [r["epoch"] for r in straight["history"]] == [1, 2]

    stopped = train(dataset, _config(checkpoint_minutes=0.0, max_minutes=0.0), tmp_path / "run-b",
                    out_model=tmp_path / "b" / "model.pt", processes=1)
    assert not stopped["finished"] and stopped["history"] == []
    assert not (tmp_path / "b" / "model.pt").exists()  # no model until the campaign ends
    kept = tmp_path / "b" / TRAIN_STATE_FILE
    state = torch.load(kept, map_location="cpu", weights_only=True)
    assert (state["epoch"], state["batch"]) == (0, 1)

    shutil.rmtree(tmp_path / "run-b")  # the session's machine is gone; the committed copy remains
    resumed = train(dataset, _config(), tmp_path / "run-b", resume=True, out_model=tmp_path / "b" / "model.pt",
                    processes=1)
    assert resumed["finished"]
    for a, b in zip(straight["history"], resumed["history"]):
        assert a["loss"] == b["loss"] and a["val_top1"] == b["val_top1"] and a["lr"] == b["lr"]
    a, b = _weights(tmp_path / "run-a" / "last.pt"), _weights(tmp_path / "run-b" / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    rows = list(csv.DictReader((tmp_path / "b" / TRAIN_LOG_FILE).read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(float(r["samples_per_s"]) > 0 for r in rows)
    assert float(rows[1]["hours"]) > float(rows[0]["hours"]) > 0  # cumulative across sessions
    assert "val_top10" in rows[0] and "lr" in rows[0]


def test_resume_refuses_another_recipe(tiny_cifs, tmp_path):
    dataset = get_dataset(str(tiny_cifs))
    train(dataset, _config(checkpoint_minutes=0.0, max_minutes=0.0), tmp_path / "run", processes=1)
    with pytest.raises(ValueError, match="another recipe"):
        train(dataset, replace(_config(), lr=1e-2), tmp_path / "run", resume=True, processes=1)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(dataset, _config(), tmp_path / "elsewhere", resume=True, processes=1)
