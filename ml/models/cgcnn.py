"""Crystal graph convolutional encoder (CGCNN; Xie & Grossman, PRL 120, 145301, 2018).

Our :class:`CGCNNConv` is the ORIGINAL CGCNN layer (the authors' ``ConvLayer``), written on
PyG's ``MessagePassing``; PyG's own ``CGConv`` differs (one optional batch norm after
aggregation, no final softplus). For centre atom i with neighbours j and edge features u_ij:

    z_ij = v_i ⊕ v_j ⊕ u_ij
    (f_ij, c_ij) = split(BN_1(W z_ij + b))
    v_i' = softplus(v_i + BN_2(Σ_j σ(f_ij) ⊙ softplus(c_ij)))          (eq. 5 of the paper)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing, global_mean_pool

from ml.models.heads import ProjectionHead


@dataclass(frozen=True)
class CGCNNConfig:
    """Crystal encoder sizes.

    Attributes:
        atom_features: input atom feature length (92, :mod:`ml.features.atom_features`).
        hidden: atom embedding width inside the convolutions.
        n_conv: number of :class:`CGCNNConv` layers (3 in Suzuki et al.).
        gaussian_max, gaussian_step: distance expansion centres 0 … ``gaussian_max`` Å every
            ``gaussian_step`` Å, width = step (CGCNN: 8 Å, 0.2 Å → 41 Gaussians).
        head_hidden: width of the projection head's hidden layers.
        embedding_dim: output length (1024 in the paper).
    """

    atom_features: int = 92
    hidden: int = 64
    n_conv: int = 3
    gaussian_max: float = 8.0
    gaussian_step: float = 0.2
    head_hidden: int = 256
    embedding_dim: int = 128

    def __post_init__(self) -> None:
        if min(self.atom_features, self.hidden, self.n_conv, self.head_hidden, self.embedding_dim) < 1:
            raise ValueError(f"invalid CGCNNConfig {self}")
        if not 0 < self.gaussian_step < self.gaussian_max:
            raise ValueError(f"invalid Gaussian expansion in {self}")


#: Exponents below this give exactly 0 in :class:`GaussianDistance` (exp(−80) ≈ 1.8e−35).
#: Left alone, exp(−87 … −103) are subnormal float32 numbers, and x86 CPUs compute with those
#: in microcode: they made the expansion 4× and each edge matmul 3× slower (measured on the
#: full map's batches). The values dropped are below float32's resolution of anything they are
#: added to.
UNDERFLOW_EXPONENT = -80.0


class GaussianDistance(nn.Module):
    """Expands distances on Gaussians: exp(−(d − μ_k)² / σ²), μ_k = 0, step, …, max (Å),
    set to exactly 0 where the exponent is below :data:`UNDERFLOW_EXPONENT`.

    Shapes:
        ``(E,)`` distances in Å → ``(E, K)`` with K = max / step + 1.
    """

    def __init__(self, maximum: float = 8.0, step: float = 0.2) -> None:
        super().__init__()
        self.register_buffer("centres", torch.arange(0.0, maximum + step / 2, step))
        self.width = step

    def forward(self, distance: Tensor) -> Tensor:
        exponent = -((distance[:, None] - self.centres) ** 2) / self.width**2
        below = exponent < UNDERFLOW_EXPONENT
        return torch.exp(exponent.clamp_min(UNDERFLOW_EXPONENT)).masked_fill(below, 0.0)


class CGCNNConv(MessagePassing):
    """The original CGCNN convolution (see module docstring for the equation).

    Shapes:
        x ``(N, H)`` atom features, edge_index ``(2, E)`` (row 0 = neighbour j, row 1 =
        centre i), edge_attr ``(E, K)`` → ``(N, H)``. N: atoms in the batch; E: edges.
    """

    def __init__(self, hidden: int, edge_features: int) -> None:
        super().__init__(aggr="add")
        self.hidden = hidden
        self.fc_full = nn.Linear(2 * hidden + edge_features, 2 * hidden)
        self.bn_edges = nn.BatchNorm1d(2 * hidden)
        self.bn_sum = nn.BatchNorm1d(hidden)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        # W [v_i ⊕ v_j ⊕ u_ij] = W_i v_i + W_j v_j + W_u u_ij: the atom terms are computed once
        # per atom and gathered per edge, which is the same layer at a fraction of the cost.
        # (Folding the eval-mode BN_1 into W saved another 10 % but moved embeddings by up to
        # 6e-4 through rounding, so a rebuilt map would no longer match the stored one.)
        h = self.hidden
        weight = self.fc_full.weight
        centre = x @ weight[:, :h].t()
        neighbour = x @ weight[:, h : 2 * h].t()
        edge = F.linear(edge_attr, weight[:, 2 * h :], self.fc_full.bias)
        summed = self.propagate(edge_index, centre=centre, neighbour=neighbour, edge=edge)
        return F.softplus(x + self.bn_sum(summed))

    def message(self, centre_i: Tensor, neighbour_j: Tensor, edge: Tensor) -> Tensor:
        # centre_i is this call's own gather, so adding in place is safe for autograd as well
        gated = self.bn_edges(centre_i.add_(neighbour_j).add_(edge))
        gate, core = gated.chunk(2, dim=1)
        return torch.sigmoid(gate) * F.softplus(core)


class CrystalEncoder(nn.Module):
    """CGCNN crystal encoder: atom embedding, ``n_conv`` convolutions, mean pooling, head.

    The 92-d atom feature table is a fixed buffer indexed by atomic number, so a model file
    carries it and never needs pymatgen.

    Shapes:
        atomic_numbers ``(N,)`` long, edge_index ``(2, E)``, edge_distance ``(E,)`` Å,
        batch ``(N,)`` crystal of each atom, ``n_crystals`` B → ``(B, embedding_dim)``.
    """

    def __init__(self, config: CGCNNConfig, atom_feature_table: Tensor) -> None:
        super().__init__()
        if atom_feature_table.shape[1] != config.atom_features:
            raise ValueError(
                f"atom feature table has {atom_feature_table.shape[1]} columns, config says {config.atom_features}"
            )
        self.config = config
        self.register_buffer("atom_feature_table", atom_feature_table.float())
        self.expand = GaussianDistance(config.gaussian_max, config.gaussian_step)
        n_gaussians = len(self.expand.centres)
        self.embed = nn.Linear(config.atom_features, config.hidden)
        self.convs = nn.ModuleList(CGCNNConv(config.hidden, n_gaussians) for _ in range(config.n_conv))
        self.head = ProjectionHead(config.hidden, config.head_hidden, config.embedding_dim)

    def pooled(self, atomic_numbers: Tensor, edge_index: Tensor, edge_distance: Tensor, batch: Tensor, n_crystals: int) -> Tensor:
        """Mean-pooled atom features after the convolutions, ``(B, hidden)``."""
        x = self.embed(self.atom_feature_table[atomic_numbers])
        edge_attr = self.expand(edge_distance)
        for conv in self.convs:
            x = conv(x, edge_index, edge_attr)
        return global_mean_pool(x, batch, size=n_crystals)

    def forward(self, atomic_numbers: Tensor, edge_index: Tensor, edge_distance: Tensor, batch: Tensor, n_crystals: int) -> Tensor:
        return self.head(self.pooled(atomic_numbers, edge_index, edge_distance, batch, n_crystals))
