"""The CMML model (Suzuki et al. 2022): a crystal encoder and an XRD encoder trained into one
Euclidean space, with its configuration and checkpoint format."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ml.models.cgcnn import CGCNNConfig, CrystalEncoder
from ml.models.checkpoint import CheckpointFormat, load_checkpoint, save_checkpoint
from ml.models.xrd_cnn import XRDCNNConfig, XRDEncoder

CHECKPOINT_FORMAT = 1
#: The map model's files; the committed ones predate the ``kind`` field (``untagged``).
CHECKPOINT = CheckpointFormat("cmml", CHECKPOINT_FORMAT, "CMML", "python -m ml train --config cpu", untagged=True)


@dataclass(frozen=True)
class CMMLConfig:
    """Both encoders; their embedding sizes must agree."""

    crystal: CGCNNConfig = field(default_factory=CGCNNConfig)
    xrd: XRDCNNConfig = field(default_factory=XRDCNNConfig)

    def __post_init__(self) -> None:
        if self.crystal.embedding_dim != self.xrd.embedding_dim:
            raise ValueError("crystal and XRD embedding sizes differ")

    @classmethod
    def from_dict(cls, data: dict) -> "CMMLConfig":
        xrd = dict(data["xrd"])
        xrd["channels"], xrd["pools"] = tuple(xrd["channels"]), tuple(xrd["pools"])
        return cls(crystal=CGCNNConfig(**data["crystal"]), xrd=XRDCNNConfig(**xrd))


class CMML(nn.Module):
    """Crystal encoder x = f(graph) and XRD encoder y = g(pattern), both ``(B, D)``."""

    def __init__(self, config: CMMLConfig, atom_feature_table: Tensor) -> None:
        super().__init__()
        self.config = config
        self.crystal = CrystalEncoder(config.crystal, atom_feature_table)
        self.xrd = XRDEncoder(config.xrd)

    def forward(self, atomic_numbers: Tensor, edge_index: Tensor, edge_distance: Tensor, batch: Tensor,
                n_crystals: int, patterns: Tensor) -> tuple[Tensor, Tensor]:
        """Both views of B materials: graph tensors as in :class:`CrystalEncoder`, patterns
        ``(B, n_bins)`` → ``(crystal (B, D), xrd (B, D))``."""
        return self.crystal(atomic_numbers, edge_index, edge_distance, batch, n_crystals), self.xrd(patterns)


def save_model(path: Path, model: CMML, extra: dict | None = None) -> None:
    """Write ``{"kind", "format", "config", "state_dict", **extra}`` atomically to ``path``
    (:func:`ml.models.checkpoint.save_checkpoint`).

    Raises:
        ValueError: ``extra`` would overwrite one of the checkpoint's own fields.
    """
    save_checkpoint(path, CHECKPOINT, asdict(model.config), model.state_dict(), extra)


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[CMML, dict]:
    """Rebuild a :class:`CMML` from a file of :func:`save_model` (``strict=True``).

    Returns:
        ``(model in eval mode, the whole payload)``.

    Raises:
        FileNotFoundError: no such file. ValueError: not a matmap CMML checkpoint (of format
        :data:`CHECKPOINT_FORMAT`).
    """
    payload = load_checkpoint(path, CHECKPOINT, device)
    config = CMMLConfig.from_dict(payload["config"])
    table = payload["state_dict"]["crystal.atom_feature_table"]
    model = CMML(config, table)
    model.load_state_dict(payload["state_dict"], strict=True)
    return model.to(device).eval(), payload
