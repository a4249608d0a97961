"""Precise BatchNorm statistics (ml.training.cmml.recalibrate_batch_norm) on a tiny real slice."""

from __future__ import annotations

import numpy as np
import torch

from ml.features.atom_features import atom_feature_table
from ml.models.cmml import CMML
from ml.data.datasets import get_dataset
from ml.training.cmml import load_training_data, recalibrate_batch_norm
from ml.training.cmml_recipes import TRAIN_CONFIGS


def test_running_statistics_become_the_exact_batch_statistics(tiny_cifs):
    torch.manual_seed(0)
    data = load_training_data(get_dataset(str(tiny_cifs)), None, processes=1)
    model = CMML(TRAIN_CONFIGS["cpu"].model, torch.from_numpy(atom_feature_table()))
    norm = model.xrd.head.layers[1]  # BatchNorm1d after the head's first linear layer
    seen = []
    handle = norm.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach().clone()))
    norm.running_mean.fill_(123.0)  # stale statistics, as after training
    rows = np.arange(len(data.material_ids))
    batch_size = 16
    recalibrate_batch_norm(model, data, rows, batch_size, n_batches=3)
    handle.remove()
    assert len(seen) == 3
    assert norm.momentum == 0.1, "the momentum is restored afterwards"
    expected = torch.stack([x.mean(dim=0) for x in seen]).mean(dim=0)  # cumulative average of batch means
    assert torch.allclose(norm.running_mean, expected, atol=1e-5)


def test_recalibration_does_not_change_weights(tiny_cifs):
    data = load_training_data(get_dataset(str(tiny_cifs)), None, processes=1)
    model = CMML(TRAIN_CONFIGS["cpu"].model, torch.from_numpy(atom_feature_table()))
    model.eval()
    before = {k: v.clone() for k, v in model.named_parameters()}
    recalibrate_batch_norm(model, data, np.arange(len(data.material_ids)), 16, n_batches=2)
    assert not model.training, "the model's mode is restored"
    for name, value in model.named_parameters():
        assert torch.equal(value, before[name]), name
