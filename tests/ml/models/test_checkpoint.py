"""The one checkpoint module (``ml/models/checkpoint.py``): round trip, refusals with a message
that names the file and the command, an interrupted write, and the committed checkpoints loading
through the three model wrappers unchanged."""

from __future__ import annotations

import hashlib
import re

import pytest
import torch
from torch import nn

from ml.models.cmml import CMML, load_model
from ml.models.checkpoint import CheckpointFormat, load_checkpoint, save_checkpoint, write_atomic
from ml.models.vae3d import CondVAE3D, load_voxel_model
from ml.training.property import PropertyModel, load_property_model
from ml.settings import REPO_ROOT

SPEC = CheckpointFormat("toy", 2, "toy-model", "python -m ml train-toy")
OLD = CheckpointFormat("toy", 2, "toy-model", "python -m ml train-toy", untagged=True)


def _save(path, extra=None):
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    save_checkpoint(path, SPEC, {"width": 3}, net.state_dict(), extra)
    return net


def test_round_trip_keeps_config_weights_and_extra(tmp_path):
    path = tmp_path / "deep" / "model.pt"
    net = _save(path, {"history": [1.0, 2.0], "note": "hello"})
    payload = load_checkpoint(path, SPEC)
    assert payload["kind"] == "toy" and payload["format"] == 2 and payload["config"] == {"width": 3}
    assert payload["history"] == [1.0, 2.0] and payload["note"] == "hello"
    for name, value in net.state_dict().items():
        torch.testing.assert_close(payload["state_dict"][name], value, rtol=0, atol=0)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no .part left behind


def test_extra_may_not_overwrite_the_checkpoints_own_fields(tmp_path):
    with pytest.raises(ValueError, match=r"\['format'\]"):
        _save(tmp_path / "model.pt", {"format": 9})
    assert not (tmp_path / "model.pt").exists()


def test_another_kind_is_refused_naming_the_file_and_the_command(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, CheckpointFormat("other", 2, "other", "x"), {}, {})
    refused = rf"{re.escape(str(path))} is not a matmap toy-model checkpoint"
    with pytest.raises(ValueError, match=rf"{refused}.*kind is 'other'.*python -m ml train-toy"):
        load_checkpoint(path, SPEC)


def test_a_newer_or_unknown_format_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, CheckpointFormat("toy", 3, "toy-model", "x"), {}, {})
    with pytest.raises(ValueError, match=r"format 3 is newer than this code reads.*python -m ml train-toy"):
        load_checkpoint(path, SPEC)
    for version in (1, "2", None):
        torch.save({"kind": "toy", "format": version, "config": {}, "state_dict": {}}, path)
        with pytest.raises(ValueError, match=rf"{re.escape(str(path))} is not a matmap toy-model.*format is"):
            load_checkpoint(path, SPEC)


def test_a_file_without_kind_loads_only_where_the_family_allows_it(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"format": 2, "config": {"width": 3}, "state_dict": {}}, path)  # written before the field
    assert load_checkpoint(path, OLD)["config"] == {"width": 3}
    with pytest.raises(ValueError, match="kind is None"):
        load_checkpoint(path, SPEC)
    torch.save({"format": 2, "state_dict": {}}, path)
    with pytest.raises(ValueError, match="no config"):
        load_checkpoint(path, OLD)


def test_a_missing_or_unreadable_file_is_refused(tmp_path):
    missing = re.escape(str(tmp_path / "none.pt"))
    with pytest.raises(FileNotFoundError, match=rf"no model file at {missing}.*python -m ml train-toy"):
        load_checkpoint(tmp_path / "none.pt", SPEC)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ValueError, match="holds a Tensor.*python -m ml train-toy"):
        load_checkpoint(tmp_path / "tensor.pt", SPEC)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="unreadable.*python -m ml train-toy"):
        load_checkpoint(tmp_path / "junk.pt", SPEC, command="python -m ml train-toy")
    with pytest.raises(ValueError, match="make one with: custom command"):
        load_checkpoint(tmp_path / "junk.pt", SPEC, command="custom command")


def test_an_interrupted_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    _save(path, {"note": "old"})
    before = path.read_bytes()

    def crash(payload, target):
        with open(target, "wb") as handle:
            handle.write(b"half a checkpoint")  # a partial file, then the process is interrupted
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        _save(path, {"note": "new"})
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, {"anything": 1})
    monkeypatch.undo()
    assert path.read_bytes() == before and load_checkpoint(path, SPEC)["note"] == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


# --------------------------------------------------------------------------- the committed checkpoints

MODELS = REPO_ROOT / "data" / "models"
COMMITTED = {
    "cmml-cpu/model.pt": lambda p: load_model(p),
    "cmml-full/model.pt": lambda p: load_model(p),
    "cgcnn-formation-energy/model.pt": lambda p: load_property_model(str(p)),
    "cgcnn-band-gap/model.pt": lambda p: load_property_model(str(p)),
    "vae-cpu/vae.pt": lambda p: load_voxel_model(p),
}


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_each_committed_checkpoint_loads_through_its_wrapper_unchanged(name):
    path = MODELS / name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = COMMITTED[name](path)
    if isinstance(loaded, PropertyModel):
        net, payload = loaded.net, loaded.payload
        assert payload["kind"] == "cgcnn-property" and loaded.name == path.parent.name
    else:
        net, payload = loaded
        assert isinstance(net, CMML if name.startswith("cmml") else CondVAE3D)
    assert not net.training and payload["state_dict"].keys() == net.state_dict().keys()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # read, never rewritten


def test_each_wrapper_refuses_the_others_files():
    with pytest.raises(ValueError, match="not a matmap CMML checkpoint.*kind is 'cgcnn-property'.*ml train --config"):
        load_model(MODELS / "cgcnn-band-gap" / "model.pt")
    with pytest.raises(ValueError, match="not a matmap CGCNN property-model checkpoint.*kind is None.*train-property"):
        load_property_model(str(MODELS / "cmml-cpu" / "model.pt"))
    with pytest.raises(ValueError, match="not a matmap generator checkpoint.*kind is 'cgcnn-property'.*train-vae"):
        load_voxel_model(MODELS / "cgcnn-formation-energy" / "model.pt")
