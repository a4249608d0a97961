"""The recipes of the CMML encoders' training (:func:`ml.training.cmml.train`).

Named configurations (:data:`TRAIN_CONFIGS`):

- ``paper``: the published recipe — 1024-d embeddings, head width 1024, batch 512, Adam with
  a constant learning rate of 1e-3, 1000 epochs, all training materials. For GPUs.
- ``full``: the campaign on 2 CPU cores (issue 14): every training material of ``mp2024``
  (~127k), 256-d embeddings with a head of width 512 (chosen by ``bench/train_step.py``:
  see the README), batch 256, Adam with one epoch of linear warm-up and a cosine decay to 5 % of
  1e-3 over 12 epochs, a checkpoint every 10 minutes inside an epoch, and ``--max-minutes`` to
  stop a session's share at a checkpoint. It takes longer than one session: the checkpoint and
  the campaign log are kept beside the model (:mod:`ml.training.campaign`) and committed, and ``--resume``
  continues from them on a clean clone with the same weights an uninterrupted run would have.
- ``cpu``: what trains a useful model in under an hour on 2 CPU cores. Reduced: embedding
  1024 → 128 and head width 1024 → 256 (the head's matrices dominate the parameter count and
  a 128-d space already separates the ~7k materials of a test split), batch 512 → 256 (twice
  the optimiser steps per epoch at the same cost per material), epochs 1000 → 10, and
  the training set to the first ``train_shards`` = 20 feature shards (each a random ~1/71 of
  ``mp2024``, so about 36k training materials), because each epoch costs time in proportion
  to the materials used. Kept: the CGCNN depth (3 convolutions), the XRD CNN, the loss,
  margin, Adam and its learning rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ml.models.cgcnn import CGCNNConfig
from ml.models.cmml import CMMLConfig
from ml.models.xrd_cnn import XRDCNNConfig


@dataclass(frozen=True)
class TrainConfig:
    """One training recipe; saved inside every checkpoint.

    Attributes:
        name: config name (``cpu``, ``paper``).
        model: encoder sizes.
        batch_size: materials per optimiser step (per process under torchrun).
        lr: Adam learning rate (the peak, with a schedule).
        warmup_epochs: linear warm-up from ``lr / 10`` over this many epochs (0: none).
        final_lr_ratio: after the warm-up the rate decays by a cosine to ``lr · final_lr_ratio``
            at the end of the last epoch (1: constant).
        epochs: passes over the training materials.
        checkpoint_minutes: also checkpoint inside an epoch every this many minutes (``None``:
            at the end of each epoch only).
        max_minutes: stop at the first checkpoint after this wall time of the session (``None``:
            run every epoch); ``--resume`` continues.
        margin: triplet margin m.
        train_shards: use the first this many feature shards (``None``: all).
        max_val: cap on validation materials scored each epoch (``None``: all).
        seed: seed of the permutation and the negatives.
    """

    name: str
    model: CMMLConfig = field(default_factory=CMMLConfig)
    batch_size: int = 256
    lr: float = 1e-3
    warmup_epochs: float = 0.0
    final_lr_ratio: float = 1.0
    epochs: int = 40
    margin: float = 1.0
    train_shards: int | None = None
    max_val: int | None = None
    seed: int = 0
    checkpoint_minutes: float | None = None
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 2 or self.lr <= 0 or self.epochs < 1 or self.margin <= 0:
            raise ValueError(f"invalid TrainConfig {self}")
        if self.warmup_epochs < 0 or not 0 < self.final_lr_ratio <= 1:
            raise ValueError(f"invalid learning-rate schedule in {self}")

    def learning_rate(self, epoch: int, batch: int, n_batches: int) -> float:
        """The rate of step ``batch`` (of ``n_batches``) of epoch ``epoch`` (both from 0)."""
        t = epoch + batch / max(n_batches, 1)  # epochs done, fractional
        if t < self.warmup_epochs:
            return self.lr * (0.1 + 0.9 * t / self.warmup_epochs)
        if self.final_lr_ratio == 1:
            return self.lr
        progress = min((t - self.warmup_epochs) / max(self.epochs - self.warmup_epochs, 1e-9), 1.0)
        low = self.lr * self.final_lr_ratio
        return low + 0.5 * (self.lr - low) * (1 + math.cos(math.pi * progress))

    def same_recipe(self, other: "TrainConfig") -> bool:
        """Equal but for what may change between the sessions of a campaign (the session's time
        limits and, with a warning, the number of epochs)."""
        loose = {"epochs": 1, "checkpoint_minutes": None, "max_minutes": None}
        return replace(self, **loose) == replace(other, **loose)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        data = dict(data)
        data["model"] = CMMLConfig.from_dict(data["model"])
        return cls(**data)


def _sized(embedding: int, head: int) -> CMMLConfig:
    return CMMLConfig(
        crystal=CGCNNConfig(embedding_dim=embedding, head_hidden=head),
        xrd=XRDCNNConfig(embedding_dim=embedding, head_hidden=head),
    )


TRAIN_CONFIGS: dict[str, TrainConfig] = {
    "paper": TrainConfig(name="paper", model=_sized(1024, 1024), batch_size=512, lr=1e-3, epochs=1000),
    "cpu": TrainConfig(name="cpu", model=_sized(128, 256), batch_size=256, lr=1e-3, epochs=10, train_shards=20),
    "full": TrainConfig(name="full", model=_sized(256, 512), batch_size=256, lr=1e-3, warmup_epochs=1.0,
                        final_lr_ratio=0.05, epochs=12, checkpoint_minutes=10.0),
}
