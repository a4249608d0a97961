"""Conditional VAE on voxel crystals with species channels (after Court et al., J. Chem. Inf.
Model. 60, 4518, 2020; ``../shared/docs/method.md`` part B), redesigned for two CPU cores.

Symbols: G voxels per cell edge (16 on the CPU, the paper's 32 on a GPU), M the density grid
(one Gaussian of height 1 per atom, :mod:`ml.generation.voxels`), S the species grid (class index of the
covering atom's element in the model's vocabulary, −1 for empty voxels), a the cubic cell
length (Å), y the one-hot formation-energy decile (10), z the latent vector (``latent_dim``).

    slots    the crystal's distinct elements fill K = 3 slots in the order they first occur in
             the grid (voxel (0,0,0) first; c_1 … c_K, "none" past the last); each atom voxel's
             slot index k(S) is its element's rank (computed from S, see
             :func:`ml.models.vae3d_slots.slot_targets`)
    input    X = [M ; e(S) ; onehot k(S) ; a / scale ; y]  as (1 + E + K + 1 + 10) channels, e a
             learned E-d element embedding painted on the voxels its atom covers (0 on empty voxels)
    encoder  h = [4 × (Conv3d 3³ circular + BatchNorm + LeakyReLU + MaxPool 2) → flatten ; y ; a/scale ;
             e(c_1) … e(c_K)] → μ, log σ²                        q(z | X, y) = N(μ, diag σ²)
    decoder  [z ; y] → linear → (C₃, 2, 2, 2) → 3 × (trilinear ×2 ; P + Conv3d circular + BN + LeakyReLU)
             → 1×1 heads: density M' (1 channel) and slot logits s (K channels), each plus
             the coarse head: up(linear([z ; y]) as (1 + K) maps of (G/2)³), trilinear
             P: fixed periodic position channels sin, cos(2π k x_i / G) of each voxel along each
             axis, k = 1, 2, 4 (18 channels), concatenated before every decoder convolution
    elements v_1 … v_K = linear([z ; y]), each E-d, and the element logits of slot k are
             ℓ_k(e) = −‖v_k − e_e‖² with the SAME embedding table e as the encoder's (tied weights)
    species  p(e | voxel) = Σ_k softmax(s)_k · softmax(ℓ_k)(e)     (a mixture over the slots)
    lattice  a' = MLP([z ; y])                                   (a cubic cell: one length)
    sites    n' = MLP([z ; y]) → logits over 0 … max_sites       (atoms in the conventional cell)
    loss     L = w_M · MSE(M, M') + w_S · [CE(k(S), s | atom voxels) + CE(c_k, ℓ_k | filled slots)]
                 + w_a · (a − a')²/scale² + w_n · CE(n, n') + β · KL(q ‖ N(0, I))   (:mod:`ml.models.vae3d_loss`)

Why the slots are supervised and ordered by first occurrence in the grid, with the measurements
that decided it: :mod:`ml.models.vae3d_slots`.

The coarse head: a linear map of [z ; y] to (1 + K) maps at G/2 resolution, zero-initialised,
up-sampled trilinearly and added to the density and slot logits, gives the decoder a
position-specific path from z to every voxel (convolutions alone are translation-equivariant).
log σ² starts at −4 (σ ≈ 0.14) so the decoder is not drowned in sampling noise while z is still
small.

Why a site-count head: the remaining error of the first supervised-slot model was a sub-lattice
filled that should be empty (a half-Heusler's empty 4d sites decoded at density ≈ 0.57, a
12-site crystal read as 16): the density decoder hedges between two prototypes of one family,
and no single threshold separates a hedged peak from a true one. With the true site count, the
same model's grids decoded (the n highest peaks) to the exact composition for 97.0 % of 743
training crystals instead of 88.0 % (mean |Δ sites| 0.004 instead of 0.389), and a linear probe
read the count from that model's μ for 94.3 % of held-out training crystals. So the count is
predicted from z (trained with the rest) and :func:`ml.generation.decode.decode_crystal` keeps that
many peaks.

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
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ml.models.checkpoint import CheckpointFormat, load_checkpoint, save_checkpoint
from ml.models.vae3d_slots import slot_targets

N_DECILES = 10


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
        max_sites: largest site count the site-count head predicts (classes 0 … max_sites).
        site_count_weight: w_n, weight of the site-count cross entropy.
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
    lattice_weight: float = 1000.0
    max_sites: int = 40
    site_count_weight: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.channels) != 4 or min(self.channels) < 1:
            raise ValueError(f"the encoder has 4 blocks; got channels {self.channels}")
        if self.grid % 16 or self.grid < 16:
            raise ValueError(f"grid {self.grid} must be a multiple of 16 (4 max-pools)")
        if min(self.n_species, self.species_embedding, self.n_conditions, self.latent_dim) < 1:
            raise ValueError(f"invalid VAE3DConfig {self}")
        if self.max_sites < 1:
            raise ValueError(f"max_sites must be ≥ 1, got {self.max_sites}")
        weights = (self.beta, self.density_weight, self.species_weight, self.lattice_weight, self.site_count_weight)
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
        species_logits: ``(B, V, G, G, G)`` log-probabilities of each element (the slot mixture).
        lattice: ``(B,)`` decoded cubic cell length, Å.
        mu, logvar: ``(B, latent_dim)`` of q(z | X, y).
        z: ``(B, latent_dim)`` the latent vector decoded.
        slot_logits: ``(B, K, G, G, G)`` which slot each voxel holds (unnormalised).
        element_logits: ``(B, K, V)`` which element each slot holds (unnormalised).
        site_count_logits: ``(B, max_sites + 1)`` how many atoms the cell holds (unnormalised).
    """

    density: Tensor
    species_logits: Tensor
    lattice: Tensor
    mu: Tensor
    logvar: Tensor
    z: Tensor
    slot_logits: Tensor
    element_logits: Tensor
    site_count_logits: Tensor


class DecodedGrids(NamedTuple):
    """What :meth:`CondVAE3D.decode` gives for ``B`` latent vectors.

    Attributes:
        density: ``(B, 1, G, G, G)`` decoded density M'.
        log_probs: ``(B, V, G, G, G)`` per-voxel log-probabilities of the V elements.
        lattice: ``(B,)`` cubic cell length, Å.
        n_sites: ``(B,)`` int64, the most likely number of atoms in the cell.
    """

    density: Tensor
    log_probs: Tensor
    lattice: Tensor
    n_sites: Tensor


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
        c_in = 1 + config.species_embedding + config.slots + 1 + config.n_conditions
        blocks: list[nn.Module] = []
        for width in c:
            blocks += _conv(c_in, width) + [nn.MaxPool3d(2)]
            c_in = width
        self.encoder = nn.Sequential(*blocks)
        flat = c[-1] * config.bottleneck_grid**3 + config.n_conditions + 1 + config.slots * config.species_embedding
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
        self.coarse = config.grid // 2  # a position-specific read-out of z at half resolution
        self.coarse_head = nn.Linear(zy, (1 + config.slots) * self.coarse**3)
        nn.init.zeros_(self.coarse_head.weight)
        nn.init.zeros_(self.coarse_head.bias)
        self.slot_vectors = nn.Linear(zy, config.slots * config.species_embedding)
        self.lattice_head = nn.Sequential(nn.Linear(zy, 64), nn.LeakyReLU(0.2, inplace=True), nn.Linear(64, 1))
        self.site_count_head = nn.Sequential(nn.Linear(zy, 64), nn.LeakyReLU(0.2, inplace=True),
                                             nn.Linear(64, config.max_sites + 1))

    def _embed(self, classes: Tensor) -> Tensor:
        """Embeddings of class indices (any shape, −1 → a zero vector), shape ``(*, E)``."""
        return self.embedding(classes.clamp(min=0)) * (classes >= 0).unsqueeze(-1).to(self.embedding.weight.dtype)

    def encoder_input(self, density: Tensor, species: Tensor, lattice: Tensor, condition: Tensor) -> Tensor:
        """``X = [M ; e(S) ; onehot k(S) ; a/scale ; y]``, shape ``(B, 1 + E + K + 1 + 10, G, G, G)``."""
        g = density.shape[-1]
        embedded = self._embed(species).permute(0, 4, 1, 2, 3)
        voxel_slot, _ = slot_targets(species, self.config.slots, self.config.n_species)
        slot_planes = F.one_hot(voxel_slot.clamp(min=0), self.config.slots).permute(0, 4, 1, 2, 3).to(density.dtype)
        slot_planes = slot_planes * (voxel_slot >= 0).unsqueeze(1).to(density.dtype)
        planes = torch.cat([(lattice / self.config.lattice_scale)[:, None], condition.to(density.dtype)], dim=1)
        planes = planes[:, :, None, None, None].expand(-1, -1, g, g, g)
        return torch.cat([density.unsqueeze(1), embedded, slot_planes, planes], dim=1)

    def encode(self, density: Tensor, species: Tensor, lattice: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        """μ and log σ² of q(z | X, y), each ``(B, latent_dim)``."""
        h = self.encoder(self.encoder_input(density, species, lattice, condition)).flatten(1)
        _, slot_class = slot_targets(species, self.config.slots, self.config.n_species)
        h = torch.cat([h, condition.to(h.dtype), (lattice / self.config.lattice_scale)[:, None].to(h.dtype),
                       self._embed(slot_class).flatten(1)], dim=1)
        return self.to_mu(h), self.to_logvar(h).clamp(-30.0, 20.0)

    def element_logits(self, vectors: Tensor) -> Tensor:
        """Element logits ``(B, K, V)`` of slot vectors ``(B, K, E)``: −‖v_k − e_e‖² against the
        vocabulary's rows of the input embedding (tied weights; row V, "unknown", is never predicted)."""
        table = self.embedding.weight[: self.config.n_species]  # (V, E)
        return 2 * vectors @ table.T - vectors.pow(2).sum(dim=-1, keepdim=True) - table.pow(2).sum(dim=1)

    @staticmethod
    def species_log_probs(slot_logits: Tensor, element_logits: Tensor) -> Tensor:
        """log p(e | voxel) ``(B, V, G, G, G)`` = log Σ_k softmax(s)_k softmax(ℓ_k)(e), of slot
        logits ``(B, K, G, G, G)`` and element logits ``(B, K, V)``."""
        mixture = torch.einsum("bkgxy,bkv->bvgxy", torch.softmax(slot_logits, dim=1), torch.softmax(element_logits, dim=2))
        return mixture.clamp(min=1e-12).log()

    def _decode(self, z: Tensor, condition: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        zy = torch.cat([z, condition.to(z.dtype)], dim=1)
        s = self.start
        h = self.from_latent(zy).view(len(z), self.config.channels[2], s, s, s)
        for block in self.decoder:
            h = self.up(h)
            h = block(torch.cat([h, position_channels(h.shape[-1], h).expand(len(h), -1, -1, -1, -1)], dim=1))
        lattice = self.lattice_head(zy)[:, 0] * self.config.lattice_scale
        vectors = self.slot_vectors(zy).view(len(z), self.config.slots, self.config.species_embedding)
        g = self.coarse
        coarse = self.up(self.coarse_head(zy).view(len(z), 1 + self.config.slots, g, g, g))
        return (self.density_head(h) + coarse[:, :1], self.slot_head(h) + coarse[:, 1:],
                self.element_logits(vectors), lattice, self.site_count_head(zy))

    def decode(self, z: Tensor, condition: Tensor) -> DecodedGrids:
        """The grids, cell length and site count of z ``(B, latent_dim)`` under condition ``(B, 10)``
        (:class:`DecodedGrids`)."""
        density, slot_logits, element_logits, lattice, site_counts = self._decode(z, condition)
        return DecodedGrids(density, self.species_log_probs(slot_logits, element_logits), lattice,
                            site_counts.argmax(dim=1))

    def forward(self, density: Tensor, species: Tensor, lattice: Tensor, condition: Tensor,
                sample: bool = True) -> VAEOutput:
        """Encode, draw z = μ + σ ⊙ ε (μ itself when ``sample`` is false) and decode."""
        mu, logvar = self.encode(density, species, lattice, condition)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        d, slot_logits, element_logits, a, site_counts = self._decode(z, condition)
        return VAEOutput(d, self.species_log_probs(slot_logits, element_logits), a, mu, logvar, z,
                         slot_logits, element_logits, site_counts)


# --------------------------------------------------------------------------- checkpoints

#: Version of the checkpoint layout (4: site-count head; 3: supervised slots; 2: latent slots;
#: 1 was UNet + VAE).
CHECKPOINT_FORMAT = 4
KIND = "cond-vae-species"
CHECKPOINT = CheckpointFormat(KIND, CHECKPOINT_FORMAT, "generator", "python -m ml train-vae --config cpu")


def save_voxel_model(path, model: CondVAE3D, extra: dict | None = None) -> None:
    """Write ``{"kind", "format", "config", "state_dict", **extra}`` atomically to ``path``
    (:func:`ml.models.checkpoint.save_checkpoint`).

    ``extra`` should hold ``vocabulary`` (the atomic number of each species class) and the
    voxel and training configurations.

    Raises:
        TypeError: ``model`` is not a :class:`CondVAE3D`. ValueError: ``extra`` would overwrite
        one of the checkpoint's own fields.
    """
    if not isinstance(model, CondVAE3D):
        raise TypeError(f"not a voxel VAE: {type(model).__name__}")
    save_checkpoint(path, CHECKPOINT, asdict(model.config), model.state_dict(), extra)


def load_voxel_model(path, device: torch.device | str = "cpu") -> tuple[CondVAE3D, dict]:
    """Rebuild a model written by :func:`save_voxel_model` (``strict=True``, eval mode).

    Returns:
        ``(model, payload)``.

    Raises:
        FileNotFoundError: no such file. ValueError: not a checkpoint of this format (for
        example one of the earlier UNet + VAE generator: retrain with ``python -m ml train-vae``).
    """
    payload = load_checkpoint(path, CHECKPOINT, device)
    try:  # a file of an earlier layout of this format: other config fields or weights (still strict)
        model = CondVAE3D(VAE3DConfig.from_dict(payload["config"]))
        model.load_state_dict(payload["state_dict"], strict=True)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"{path} holds a generator of another layout ({' '.join(str(exc).split())[:300]}); "
                         f"retrain with: {CHECKPOINT.command}") from exc
    return model.to(device).eval(), payload
