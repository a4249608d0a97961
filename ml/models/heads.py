"""The 3-layer projection head of both CMML encoders (Suzuki et al. 2022)."""

from __future__ import annotations

from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """Three fully connected layers, batch norm + ReLU after the first two, none after the last.

    Suzuki et al. (2022) report that batch normalisation after every layer except the last is
    what makes the two-encoder training stable.

    Shapes:
        input ``(B, in_features)`` → output ``(B, out_features)``.
    """

    def __init__(self, in_features: int, hidden_features: int, out_features: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, hidden_features),
            nn.BatchNorm1d(hidden_features),
            nn.ReLU(),
            nn.Linear(hidden_features, hidden_features),
            nn.BatchNorm1d(hidden_features),
            nn.ReLU(),
            nn.Linear(hidden_features, out_features),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
