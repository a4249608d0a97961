"""1D CNN encoder of powder XRD patterns (after Park et al., IUCrJ 4, 486, 2017).

Stacked ``Conv1d → BatchNorm → ReLU → MaxPool`` blocks, flattened, then the 3-layer
projection head (:class:`ml.models.heads.ProjectionHead`), as in Suzuki et al. (2022).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ml.models.heads import ProjectionHead


@dataclass(frozen=True)
class XRDCNNConfig:
    """XRD encoder sizes.

    Attributes:
        n_bins: pattern length (5000 = 2θ 10–110° in 0.02° steps).
        channels: output channels of each convolution block.
        kernel_size: convolution kernel length, bins.
        pools: max-pool size after each block (same length as ``channels``).
        first_stride: stride of the first convolution.
        head_hidden, embedding_dim: projection head widths.
    """

    n_bins: int = 5000
    channels: tuple[int, ...] = (16, 32, 64, 64)
    kernel_size: int = 7
    pools: tuple[int, ...] = (4, 4, 4, 2)
    first_stride: int = 2
    head_hidden: int = 256
    embedding_dim: int = 128

    def __post_init__(self) -> None:
        if len(self.channels) != len(self.pools) or not self.channels:
            raise ValueError("channels and pools must be non-empty and of equal length")
        if self.flat_length() < 1:
            raise ValueError(f"{self} pools the pattern down to nothing")

    def flat_length(self) -> int:
        """Length of the flattened feature vector after the last block."""
        length = (self.n_bins + 2 * (self.kernel_size // 2) - self.kernel_size) // self.first_stride + 1
        for pool in self.pools:
            length //= pool
        return length * self.channels[-1]


class XRDEncoder(nn.Module):
    """Shapes: patterns ``(B, n_bins)`` (max-normalised intensities) → ``(B, embedding_dim)``."""

    def __init__(self, config: XRDCNNConfig) -> None:
        super().__init__()
        self.config = config
        blocks: list[nn.Module] = []
        in_channels = 1
        for i, (channels, pool) in enumerate(zip(config.channels, config.pools)):
            stride = config.first_stride if i == 0 else 1
            blocks += [
                nn.Conv1d(in_channels, channels, config.kernel_size, stride=stride, padding=config.kernel_size // 2),
                nn.BatchNorm1d(channels),
                nn.ReLU(),
                nn.MaxPool1d(pool),
            ]
            in_channels = channels
        self.features = nn.Sequential(*blocks)
        self.head = ProjectionHead(config.flat_length(), config.head_hidden, config.embedding_dim)

    def forward(self, patterns: Tensor) -> Tensor:
        return self.head(self.features(patterns.unsqueeze(1)).flatten(1))
