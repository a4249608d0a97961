"""3D UNet that segments a voxel density map into per-voxel species (Court et al., J. Chem. Inf.
Model. 60, 4518, 2020; the "segmentation" and "perceptual" model of the Cond-DFC-VAE).

Input: the density channel M only, shape ``(B, 1, G, G, G)`` (G = 32). The coordinate
channels are left out: species follow from the shape and height of the density peaks, and the
VAE's perceptual loss compares φ_l(M) with φ_l(M') on the density alone.

Two heads share the decoder:

- species logits ``(B, K, G, G, G)``: class 0 is "empty", class Z the element of atomic
  number Z. Trained with a weighted cross entropy, weight_k ∝ 1 / frequency_k over the
  training voxels and weight_0 = 0 (the paper's choice: background voxels do not compete with
  the rare species);
- occupied logit ``(B, 1, G, G, G)``: a voxel inside the ionic radius of some atom (binary
  cross entropy). It decides where the species head is read.

:meth:`UNet3D.features` returns the encoder's hidden maps, the φ_l of the perceptual loss.
A model never imports pymatgen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class UNet3DConfig:
    """UNet sizes.

    Attributes:
        in_channels: input channels (1: the density M).
        n_species: species classes K, class 0 empty and class Z the element Z (104: up to Z = 103).
        base_channels: channels of the first level; level i has ``base_channels · 2^i``.
        depth: number of 2× down-samplings (the grid must divide by ``2**depth``).
        convs_per_level: 3×3×3 convolutions (each + BN + ReLU) per level (2 in the classic UNet).
        grid: voxels per cell edge G.
    """

    in_channels: int = 1
    n_species: int = 104
    base_channels: int = 16
    depth: int = 3
    convs_per_level: int = 2
    grid: int = 32

    def __post_init__(self) -> None:
        if min(self.in_channels, self.base_channels, self.depth, self.convs_per_level) < 1 or self.n_species < 2:
            raise ValueError(f"invalid UNet3DConfig {self}")
        if self.grid % (2**self.depth):
            raise ValueError(f"grid {self.grid} does not divide by 2**depth = {2**self.depth}")

    @classmethod
    def from_dict(cls, data: dict) -> UNet3DConfig:
        return cls(**data)


def _block(c_in: int, c_out: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv3d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False),
                   nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


@dataclass
class UNetOutput:
    """Species logits ``(B, K, G, G, G)`` and occupied logits ``(B, 1, G, G, G)``."""

    species_logits: Tensor
    occupied_logits: Tensor


class UNet3D(nn.Module):
    """Encoder–decoder with skip connections (Ronneberger et al. 2015, in 3D).

    Shapes:
        density ``(B, 1, G, G, G)`` → :class:`UNetOutput` (species ``(B, K, G, G, G)``,
        occupied ``(B, 1, G, G, G)``).

    Buffers:
        class_weights ``(K,)``: the cross-entropy weights (0 for class 0), set from the
        training voxels by :func:`species_class_weights` and saved with the model.
    """

    def __init__(self, config: UNet3DConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.base_channels * 2**i for i in range(config.depth + 1)]
        self.down = nn.ModuleList()
        c_in = config.in_channels
        for w in widths:
            self.down.append(_block(c_in, w, config.convs_per_level))
            c_in = w
        self.up = nn.ModuleList()
        for i in reversed(range(config.depth)):
            self.up.append(_block(widths[i + 1] + widths[i], widths[i], config.convs_per_level))
        self.species_head = nn.Conv3d(widths[0], config.n_species, 1)
        self.occupied_head = nn.Conv3d(widths[0], 1, 1)
        weights = torch.ones(config.n_species)
        weights[0] = 0.0
        self.register_buffer("class_weights", weights)

    def features(self, density: Tensor) -> list[Tensor]:
        """The encoder's hidden maps φ_l (one per level, after its convolutions).

        Shapes:
            ``(B, 1, G, G, G)`` → ``[(B, c·2^l, G/2^l, G/2^l, G/2^l) for l = 0 … depth]``.
        """
        maps = []
        x = density
        for level, block in enumerate(self.down):
            if level:
                x = F.max_pool3d(x, 2)
            x = block(x)
            maps.append(x)
        return maps

    def hidden(self, density: Tensor) -> Tensor:
        """The decoder's last map, shared by both heads, ``(B, base_channels, G, G, G)``."""
        maps = self.features(density)
        x = maps[-1]
        for block, skip in zip(self.up, reversed(maps[:-1])):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = block(torch.cat([x, skip], dim=1))
        return x

    def forward(self, density: Tensor) -> UNetOutput:
        x = self.hidden(density)
        return UNetOutput(self.species_head(x), self.occupied_head(x))

    def loss(self, density: Tensor, species: Tensor) -> tuple[Tensor, dict[str, float]]:
        """:func:`unet_loss` of this model on a batch, computed faster: the species head runs only
        on the voxels of non-zero true species, the only ones with a non-zero class weight (the
        value is the same; the 1×1 species convolution over every voxel was half the cost).

        Shapes:
            density ``(B, 1, G, G, G)``, species ``(B, G, G, G)`` int64.
        """
        x = self.hidden(density)
        occupied_logits = self.occupied_head(x)
        mask = species > 0
        features = x.permute(0, 2, 3, 4, 1)[mask]  # (n_occupied, C)
        logits = F.linear(features, self.species_head.weight.flatten(1), self.species_head.bias)
        targets = species[mask]
        weights = self.class_weights
        summed = F.cross_entropy(logits, targets, weight=weights, reduction="sum")
        species_loss = summed / weights[targets].sum().clamp_min(1e-12)
        occupied_loss = F.binary_cross_entropy_with_logits(occupied_logits, mask.to(occupied_logits.dtype).unsqueeze(1))
        total = species_loss + occupied_loss
        return total, {"species": float(species_loss.detach()), "occupied": float(occupied_loss.detach())}


def species_class_weights(counts: Tensor) -> Tensor:
    """Cross-entropy weights ∝ 1 / frequency (Court et al. 2020), 0 for the empty class and for
    species never seen; normalised so that the weighted mean over the counted non-empty voxels is 1.

    Shapes:
        counts ``(K,)`` voxel counts per class → weights ``(K,)`` float32.
    """
    counts = counts.to(torch.float64)
    weights = torch.zeros_like(counts)
    seen = counts > 0
    seen[0] = False
    weights[seen] = 1.0 / counts[seen]
    total = counts[seen].sum()
    if total > 0:
        weights = weights * total / (weights * counts).sum()
    return weights.to(torch.float32)


def unet_loss(output: UNetOutput, species: Tensor, class_weights: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Weighted cross entropy of the species plus binary cross entropy of the occupied map.

    Args:
        output: the UNet's logits for a batch.
        species: true classes ``(B, G, G, G)`` int64 (0 empty, Z otherwise).
        class_weights: ``(K,)``, 0 for the empty class.

    Returns:
        The loss (scalar) and its two parts as floats (``species``, ``occupied``).
    """
    # the weighted mean of F.cross_entropy, safe for a batch without any weighted voxel
    summed = F.cross_entropy(output.species_logits, species, weight=class_weights, reduction="sum")
    species_loss = summed / class_weights[species].sum().clamp_min(1e-12)
    occupied = (species > 0).to(output.occupied_logits.dtype).unsqueeze(1)
    occupied_loss = F.binary_cross_entropy_with_logits(output.occupied_logits, occupied)
    total = species_loss + occupied_loss
    return total, {"species": float(species_loss.detach()), "occupied": float(occupied_loss.detach())}


def predict_species(output: UNetOutput, threshold: float = 0.5) -> Tensor:
    """Per-voxel species: the most likely non-empty class where P(occupied) > ``threshold``, else 0.

    Shapes:
        → ``(B, G, G, G)`` int64.
    """
    best = output.species_logits[:, 1:].argmax(dim=1) + 1
    occupied = torch.sigmoid(output.occupied_logits[:, 0]) > threshold
    return torch.where(occupied, best, torch.zeros_like(best))
