"""Conditional VAE on voxel crystals with species channels (after Court et al., J. Chem. Inf.
Model. 60, 4518, 2020; ``../shared/docs/method.md`` part B), redesigned for two CPU cores.

Symbols: G voxels per cell edge (16 on the CPU, the paper's 32 on a GPU), M the density grid
(one Gaussian of height 1 per atom, :mod:`ml.voxels`), S the species grid (class index of the
covering atom's element in the model's vocabulary, −1 for empty voxels), a the cubic cell
length (Å), y the one-hot formation-energy decile (10), z the latent vector (``latent_dim``).

    input    X = [M ; e(S) ; a / scale ; y]  as (1 + E + 1 + 10) channels, e a learned E-d
             element embedding painted on the voxels its atom covers (0 on empty voxels)
    encoder  h = [4 × (Conv3d 3³ circular + BatchNorm + LeakyReLU + MaxPool 2) → flatten ; y ; a/scale]
             → μ, log σ²                                        q(z | X, y) = N(μ, diag σ²)
    decoder  [z ; y] → linear → (C₃, 2, 2, 2) → 3 × (trilinear ×2 ; P + Conv3d circular + BN + LeakyReLU)
             → 1×1 heads: density M' (1 channel) and slot weights w (K channels, softmax over K)
             P: fixed periodic position channels sin, cos(2π k x_i / G) of each voxel along each
             axis, k = 1, 2, 4 (18 channels), concatenated before every decoder convolution
    slots    v_1 … v_K = linear([z ; y]), each E-d: the crystal's K = 3 element vectors (global)
    species  ê = Σ_k w_k v_k at each voxel, and logit_e = −‖ê − e_e‖² for every element e of the
             vocabulary, with the SAME embedding table e as the encoder's input (tied weights)
    lattice  a' = MLP([z ; y])                                   (a cubic cell: one length)
    loss     L = w_M · MSE(M, M') + w_S · CE(S, logits | occupied voxels) + w_a · (a − a')²/scale²
                 + β · KL(q ‖ N(0, I))

Why slots and tied element vectors: with independent per-element logits every element is its
own rare class (72 classes, ~2.5 per crystal), and Adam moved the rare classes' logits slowly —
31 % of validation atom voxels were right after 3 epochs, and a separate element-presence head
got 0.3 % of validation element sets right after one. Here the crystal's elements are a global
read-out of z (K vectors in the embedding space, one shared regression learnt from every
crystal), and each voxel only chooses which of the K slots it holds (a K-way, local decision).
On 64 training crystals, 150 steps reached 84 % of atom voxels right with slots, 26 % without.
log σ² starts at −4 (σ ≈ 0.14) so the decoder is not drowned in sampling noise while z is still
small.

Where this departs from Court et al. and why (the numbers are in ``data/models/vae-cpu/MODEL_CARD.md``):

- **Species are channels of the VAE** (slots of element vectors, read by the nearest element),
  not a separate per-voxel UNet applied to the decoded density. The paper's UNet reads the element from the decoded density's shape and height; on
  the CPU budget that two-stage chain was the bottleneck (1.9 % species recall for the first
  CPU model; 26 % of true densities decoded to the right composition by a 16³ UNet in the
  issue-11 probe). The decoder gives the element of every occupied voxel directly from z, and
  the encoder sees the element as an embedding, so the density channel only has to carry the
  geometry and keeps unit-height Gaussians (the paper's Z weighting in its eq. 1 existed to let
  the UNet tell elements apart from M; here the species channels do that).
- **No perceptual (deep-feature-consistency) term**: its features came from the UNet, which this
  design does not have; the species cross entropy is the direct consistency term.
- **The cell length comes from a head on z** instead of 3 coordinate channels: the crystals are
  cubic, and the decoder of the first CPU model painted a constant coordinate ramp (every
  reconstruction read a = 4.87 Å). The encoder still sees a as a constant channel.
- **Circular padding** in every convolution (the grid is one periodic cell), **trilinear**
  up-sampling in the decoder, and **periodic position channels** P in the decoder (the paper's
  "coordinate convolution" idea, in the decoder where atoms are placed): without them three runs
  of this decoder reproduced only the mean density level (validation density MSE 0.0257 after 3
  epochs, against 0.0252 for a constant), since translation-equivariant convolutions up-sampled
  from 2³ cannot tell voxel 0 from voxel 2; with them (and a density weight of 100 instead of 10)
  the density is learnt (see the model card).

A model never imports pymatgen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

N_DECILES = 10

#: Species-grid value of an empty voxel (and the cross-entropy ``ignore_index``).
EMPTY = -1


@dataclass(frozen=True)
class VAE3DConfig:
    """Sizes and loss weights of :class:`CondVAE3D` (saved in every checkpoint).

    Attributes:
        n_species: V, the element vocabulary (class ``i`` is the ``i``-th element of the
            checkpoint's ``vocabulary``; an element outside it enters the encoder as class V,
            "unknown", and is never predicted).
        species_embedding: E, length of the learned element embedding painted on the voxels.
        slots: K, element vectors the decoder reads from z (the families have 2 or 3 elements).
        n_conditions: length of the one-hot condition (10 formation-energy deciles).
        latent_dim: length of z (the paper's 256).
        channels: output channels of the 4 encoder blocks; the decoder uses the first three reversed.
        grid: voxels per cell edge G (a multiple of 16: four max-pools).
        lattice_scale: Å; the cell length enters and leaves the network divided by it.
        beta: weight of the KL term.
        density_weight, species_weight, lattice_weight: weights of the reconstruction terms.
    """

    n_species: int
    species_embedding: int = 16
    slots: int = 3
    n_conditions: int = N_DECILES
    latent_dim: int = 256
    channels: tuple[int, ...] = (16, 32, 64, 128)
    grid: int = 16
    lattice_scale: float = 10.0
    beta: float = 1e-3
    density_weight: float = 100.0
    species_weight: float = 1.0
    lattice_weight: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.channels) != 4 or min(self.channels) < 1:
            raise ValueError(f"the encoder has 4 blocks; got channels {self.channels}")
        if self.grid % 16 or self.grid < 16:
            raise ValueError(f"grid {self.grid} must be a multiple of 16 (4 max-pools)")
        if min(self.n_species, self.species_embedding, self.n_conditions, self.latent_dim) < 1:
            raise ValueError(f"invalid VAE3DConfig {self}")
        weights = (self.beta, self.density_weight, self.species_weight, self.lattice_weight)
        if min(weights) < 0 or self.lattice_scale <= 0:
            raise ValueError(f"loss weights must be ≥ 0 and lattice_scale > 0, got {self}")

    @classmethod
    def from_dict(cls, data: dict) -> VAE3DConfig:
        return cls(**data)

    @property
    def bottleneck_grid(self) -> int:
        """Voxels per edge after the 4 max-pools (G / 16)."""
        return self.grid // 16


def one_hot_decile(decile: Tensor, n: int = N_DECILES) -> Tensor:
    """``(B,)`` integer deciles 0 … n−1 → ``(B, n)`` float one-hot.

    Raises:
        ValueError: a decile outside 0 … n−1.
    """
    if decile.numel() and (int(decile.min()) < 0 or int(decile.max()) >= n):
        raise ValueError(f"deciles must lie in 0..{n - 1}")
    return F.one_hot(decile.long(), n).float()


@dataclass
class VAEOutput:
    """One forward pass.

    Attributes:
        density: ``(B, 1, G, G, G)`` decoded density M'.
        species_logits: ``(B, V, G, G, G)`` unnormalised log-probabilities of each element.
        lattice: ``(B,)`` decoded cubic cell length, Å.
        mu, logvar: ``(B, latent_dim)`` of q(z | X, y).
        z: ``(B, latent_dim)`` the latent vector decoded.
    """

    density: Tensor
    species_logits: Tensor
    lattice: Tensor
    mu: Tensor
    logvar: Tensor
    z: Tensor


#: Periodic position channels of the decoder: sin and cos at k = 1, 2, 4 cycles per cell, 3 axes.
POSITION_FREQUENCIES = (1, 2, 4)
N_POSITION_CHANNELS = 2 * 3 * len(POSITION_FREQUENCIES)


def position_channels(g: int, like: Tensor) -> Tensor:
    """``(1, 18, g, g, g)``: sin and cos of 2π k i / g for each voxel index i along each axis and
    k in :data:`POSITION_FREQUENCIES` (periodic, so the cell's faces still meet)."""
    i = torch.arange(g, device=like.device, dtype=like.dtype)
    planes = []
    for axis in range(3):
        shape = [1, 1, 1]
        shape[axis] = g
        for k in POSITION_FREQUENCIES:
            phase = (2 * torch.pi * k / g) * i.view(shape)
            planes += [torch.sin(phase).expand(g, g, g), torch.cos(phase).expand(g, g, g)]
    return torch.stack(planes)[None]


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv3d(c_in, c_out, 3, padding=1, padding_mode="circular", bias=False), nn.BatchNorm3d(c_out),
            nn.LeakyReLU(0.2, inplace=True)]


class CondVAE3D(nn.Module):
    """Encoder, decoder and lattice head (equations in the module docstring).

    Shapes:
        density ``(B, G, G, G)`` float, species ``(B, G, G, G)`` int64 class indices (−1 empty,
        V unknown element), lattice ``(B,)`` Å, condition ``(B, 10)`` → :class:`VAEOutput`.
    """

    def __init__(self, config: VAE3DConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.embedding = nn.Embedding(config.n_species + 1, config.species_embedding)  # + "unknown"
        c_in = 1 + config.species_embedding + 1 + config.n_conditions
        blocks: list[nn.Module] = []
        for width in c:
            blocks += _conv(c_in, width) + [nn.MaxPool3d(2)]
            c_in = width
        self.encoder = nn.Sequential(*blocks)
        flat = c[-1] * config.bottleneck_grid**3 + config.n_conditions + 1
        self.to_mu = nn.Linear(flat, config.latent_dim)
        self.to_logvar = nn.Linear(flat, config.latent_dim)
        nn.init.constant_(self.to_logvar.bias, -4.0)
        self.start = 2 * config.bottleneck_grid  # the decoder starts at G/8 and up-samples 3 times
        zy = config.latent_dim + config.n_conditions
        self.from_latent = nn.Sequential(nn.Linear(zy, c[2] * self.start**3), nn.LeakyReLU(0.2, inplace=True))
        self.up = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        self.decoder = nn.ModuleList(nn.Sequential(*_conv(c_from + N_POSITION_CHANNELS, c_to))
                                     for c_from, c_to in ((c[2], c[1]), (c[1], c[0]), (c[0], c[0])))
        self.density_head = nn.Conv3d(c[0], 1, 1)
        self.slot_head = nn.Conv3d(c[0], config.slots, 1)
        self.slot_vectors = nn.Linear(zy, config.slots * config.species_embedding)
        self.lattice_head = nn.Sequential(nn.Linear(zy, 64), nn.LeakyReLU(0.2, inplace=True), nn.Linear(64, 1))

    def encoder_input(self, density: Tensor, species: Tensor, lattice: Tensor, condition: Tensor) -> Tensor:
        """``X = [M ; e(S) ; a/scale ; y]``, shape ``(B, 1 + E + 1 + 10, G, G, G)``."""
        g = density.shape[-1]
        occupied = (species >= 0).unsqueeze(1).to(density.dtype)
        embedded = self.embedding(species.clamp(min=0)).permute(0, 4, 1, 2, 3) * occupied
        planes = torch.cat([(lattice / self.config.lattice_scale)[:, None], condition.to(density.dtype)], dim=1)
        planes = planes[:, :, None, None, None].expand(-1, -1, g, g, g)
        return torch.cat([density.unsqueeze(1), embedded, planes], dim=1)

    def encode(self, density: Tensor, species: Tensor, lattice: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        """μ and log σ² of q(z | X, y), each ``(B, latent_dim)``."""
        h = self.encoder(self.encoder_input(density, species, lattice, condition)).flatten(1)
        h = torch.cat([h, condition.to(h.dtype), (lattice / self.config.lattice_scale)[:, None].to(h.dtype)], dim=1)
        return self.to_mu(h), self.to_logvar(h).clamp(-30.0, 20.0)

    def species_logits(self, vectors: Tensor) -> Tensor:
        """Element logits ``(B, V, G, G, G)`` of per-voxel element vectors ``(B, E, G, G, G)``:
        −‖ê − e_e‖² against the vocabulary's rows of the input embedding (tied weights)."""
        table = self.embedding.weight[: self.config.n_species]  # (V, E); row V is "unknown"
        cross = torch.einsum("begxy,ve->bvgxy", vectors, table)
        return 2 * cross - vectors.pow(2).sum(dim=1, keepdim=True) - table.pow(2).sum(dim=1)[None, :, None, None, None]

    def decode(self, z: Tensor, condition: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Density ``(B, 1, G, G, G)``, species logits ``(B, V, G, G, G)`` and cell length ``(B,)`` Å of z."""
        zy = torch.cat([z, condition.to(z.dtype)], dim=1)
        s = self.start
        h = self.from_latent(zy).view(len(z), self.config.channels[2], s, s, s)
        for block in self.decoder:
            h = self.up(h)
            h = block(torch.cat([h, position_channels(h.shape[-1], h).expand(len(h), -1, -1, -1, -1)], dim=1))
        lattice = self.lattice_head(zy)[:, 0] * self.config.lattice_scale
        slots = self.slot_vectors(zy).view(len(z), self.config.slots, self.config.species_embedding)
        vectors = torch.einsum("bkgxy,bke->begxy", torch.softmax(self.slot_head(h), dim=1), slots)
        return self.density_head(h), self.species_logits(vectors), lattice

    def forward(self, density: Tensor, species: Tensor, lattice: Tensor, condition: Tensor,
                sample: bool = True) -> VAEOutput:
        """Encode, draw z = μ + σ ⊙ ε (μ itself when ``sample`` is false) and decode."""
        mu, logvar = self.encode(density, species, lattice, condition)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        d, s, a = self.decode(z, condition)
        return VAEOutput(d, s, a, mu, logvar, z)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over latent dimensions, averaged over the batch (nats).

    Shapes:
        ``(B, D)``, ``(B, D)`` → scalar. Zero exactly when μ = 0 and log σ² = 0.
    """
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def vae_loss(output: VAEOutput, density: Tensor, species: Tensor, lattice: Tensor,
             config: VAE3DConfig) -> tuple[Tensor, dict[str, float]]:
    """The loss of the module docstring.

    Args:
        output: the forward pass.
        density: ``(B, G, G, G)`` true M; species ``(B, G, G, G)`` true class indices (−1 empty,
            V unknown: both ignored by the cross entropy); lattice ``(B,)`` true a, Å.

    Returns:
        The loss and its parts as floats (``density_mse``, ``species_ce``, ``lattice_mse`` in
        (Å/scale)², ``kl``, ``loss``).
    """
    density_mse = F.mse_loss(output.density[:, 0], density)
    target = species.masked_fill(species >= config.n_species, EMPTY)
    if bool((target >= 0).any()):
        species_ce = F.cross_entropy(output.species_logits, target, ignore_index=EMPTY)
    else:
        species_ce = output.species_logits.sum() * 0.0
    lattice_mse = F.mse_loss(output.lattice / config.lattice_scale, lattice / config.lattice_scale)
    kl = kl_divergence(output.mu, output.logvar)
    total = (config.density_weight * density_mse + config.species_weight * species_ce
             + config.lattice_weight * lattice_mse + config.beta * kl)
    parts = {"density_mse": float(density_mse.detach()), "species_ce": float(species_ce.detach()),
             "lattice_mse": float(lattice_mse.detach()), "kl": float(kl.detach()), "loss": float(total.detach())}
    return total, parts


# --------------------------------------------------------------------------- checkpoints

#: Version of the checkpoint layout (2: species channels and a vocabulary; 1 was UNet + VAE).
CHECKPOINT_FORMAT = 2
KIND = "cond-vae-species"


def save_voxel_model(path, model: CondVAE3D, extra: dict | None = None) -> None:
    """Write ``{"format", "kind", "config", "state_dict", **extra}`` atomically to ``path``.

    ``extra`` should hold ``vocabulary`` (the atomic number of each species class) and the
    voxel and training configurations.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(model, CondVAE3D):
        raise TypeError(f"not a voxel VAE: {type(model).__name__}")
    payload = {"format": CHECKPOINT_FORMAT, "kind": KIND, "config": asdict(model.config),
               "state_dict": model.state_dict()}
    payload.update(extra or {})
    tmp = path.with_name(path.name + ".part")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_voxel_model(path, device: torch.device | str = "cpu") -> tuple[CondVAE3D, dict]:
    """Rebuild a model written by :func:`save_voxel_model` (``strict=True``, eval mode).

    Returns:
        ``(model, payload)``.

    Raises:
        FileNotFoundError: no such file. ValueError: not a checkpoint of this format (for
        example one of the earlier UNet + VAE generator: retrain with ``python -m ml train-vae``).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no model file at {path}")
    payload = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT or payload.get("kind") != KIND:
        raise ValueError(f"{path} is not a matmap generator checkpoint (format {CHECKPOINT_FORMAT}, {KIND}); "
                         "retrain with: python -m ml train-vae --config cpu")
    try:  # a format-2 file of an earlier layout: other config fields or weights (still strict)
        model = CondVAE3D(VAE3DConfig.from_dict(payload["config"]))
        model.load_state_dict(payload["state_dict"], strict=True)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"{path} holds a generator of another layout ({' '.join(str(exc).split())[:300]}); "
                         "retrain with: python -m ml train-vae --config cpu") from exc
    return model.to(device).eval(), payload
