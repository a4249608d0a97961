"""CGCNN property regressor: a :class:`CrystalEncoder` trained to predict one scalar property.

Follows the property predictors of Court et al. (J. Chem. Inf. Model. 60, 4518, 2020; method.md
part B): ONE graph convolution, mean pooling over atoms, then dense layers to the target. The
dense part is our :class:`ml.models.heads.ProjectionHead` with output width 1 (two hidden
dense layers with batch norm + ReLU, then the linear output) — the layout of the original
CGCNN's ``conv_to_fc`` + hidden + ``fc_out`` layers, with batch norm added as in the rest of
matmap. The mean-pooled atom vector (``(B, hidden)``) is the "latent vector of a CGCNN trained
to predict energy" that Suzuki et al. (2022) use as their concept baseline.

The target normaliser (mean and standard deviation of the training targets, in the target's
unit) is a pair of buffers, so it travels in the state dict and a strict load checks it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ml.models.cgcnn import CGCNNConfig, CrystalEncoder


@dataclass(frozen=True)
class PropertyRegressorConfig:
    """One CGCNN property regressor.

    Attributes:
        target: the property column it predicts (``formation_energy_per_atom``, ``band_gap``).
        unit: the target's unit (``eV/atom``, ``eV``), shown with every prediction.
        hidden: atom vector width = latent width (CGCNN's ``atom_fea_len``, 64).
        n_conv: graph convolutions (1 in Court et al. 2020).
        dense_hidden: width of the dense layers after pooling.
        non_negative: clamp predictions at 0 (band gaps).
    """

    target: str
    unit: str
    hidden: int = 64
    n_conv: int = 1
    dense_hidden: int = 128
    non_negative: bool = False

    def __post_init__(self) -> None:
        if not self.target or min(self.hidden, self.n_conv, self.dense_hidden) < 1:
            raise ValueError(f"invalid PropertyRegressorConfig {self}")

    def encoder_config(self) -> CGCNNConfig:
        """The :class:`CGCNNConfig` of the encoder (output width 1: the normalised target)."""
        return CGCNNConfig(hidden=self.hidden, n_conv=self.n_conv, head_hidden=self.dense_hidden, embedding_dim=1)

    def to_dict(self) -> dict:
        return asdict(self)


class PropertyRegressor(nn.Module):
    """CGCNN encoder + target normaliser.

    Shapes (graph tensors as in :class:`CrystalEncoder`; B crystals):
        :meth:`forward` → ``(B,)`` normalised prediction (what the loss sees);
        :meth:`predict` → ``(B,)`` in ``config.unit``; :meth:`latent` → ``(B, hidden)``.
    """

    def __init__(self, config: PropertyRegressorConfig, atom_feature_table: Tensor,
                 target_mean: float = 0.0, target_std: float = 1.0) -> None:
        super().__init__()
        if not target_std > 0:
            raise ValueError(f"target standard deviation must be positive, got {target_std}")
        self.config = config
        self.encoder = CrystalEncoder(config.encoder_config(), atom_feature_table)
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std)))

    def forward(self, atomic_numbers: Tensor, edge_index: Tensor, edge_distance: Tensor, batch: Tensor,
                n_crystals: int) -> Tensor:
        return self.encoder(atomic_numbers, edge_index, edge_distance, batch, n_crystals)[:, 0]

    def normalise(self, target: Tensor) -> Tensor:
        """Target in ``config.unit`` → normalised (zero mean, unit variance on the training set)."""
        return (target - self.target_mean) / self.target_std

    def predict(self, *graph_inputs) -> Tensor:
        """Prediction in ``config.unit``, ``(B,)``."""
        value = self(*graph_inputs) * self.target_std + self.target_mean
        return value.clamp_min(0.0) if self.config.non_negative else value

    def latent(self, *graph_inputs) -> Tensor:
        """Mean-pooled atom vectors after the convolution, ``(B, hidden)``."""
        return self.encoder.pooled(*graph_inputs)
