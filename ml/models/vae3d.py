"""Conditional deep-feature-consistent VAE on voxel crystals (Cond-DFC-VAE; Court et al.,
J. Chem. Inf. Model. 60, 4518, 2020).

Symbols: x the 4-channel voxel input (density M and the 3 Cartesian coordinate channels),
G = 32 voxels per cell edge, y the 10-d one-hot formation-energy decile, z the latent vector
(``latent_dim`` = 256), φ_l the hidden maps of the frozen, trained segmentation UNet
(:meth:`ml.models.unet3d.UNet3D.features`).

    encoder  q(z | x, y) = N(μ, diag σ²),  [μ, log σ²] = E([x ; y broadcast as 10 constant channels])
             E = 4 × (Conv3d 3³ + BatchNorm + LeakyReLU + MaxPool 2) → flatten → two linear maps
    sample   z = μ + σ ⊙ ε,  ε ~ N(0, I)                                    (reparameterisation)
    decoder  x' = D([z ; y]):  linear → (C, G/16, G/16, G/16) → 4 × (Upsample 2 + Conv3d + BN + LeakyReLU)
             → Conv3d 3³ to 4 channels (linear output)
    loss     L = MSE(x, x') + β · KL(q(z|x,y) ‖ N(0, I)) + α · Σ_l MSE(φ_l(M), φ_l(M'))
             KL = −½ Σ_j (1 + log σ_j² − μ_j² − σ_j²)
             β = 0.0005, α = 1 (the paper's values)

Reductions (the paper does not state them): the MSE terms are means over every element of the
batch; the KL is summed over the latent dimensions and averaged over the batch.
A model never imports pymatgen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ml.models.unet3d import UNet3D, UNet3DConfig

N_DECILES = 10


@dataclass(frozen=True)
class VAE3DConfig:
    """Cond-DFC-VAE sizes.

    Attributes:
        in_channels: voxel channels (4: density + x, y, z coordinates).
        n_conditions: length of the one-hot condition (10 formation-energy deciles).
        latent_dim: length of z (256 in the paper).
        channels: output channels of the 4 encoder blocks (the decoder mirrors them).
        grid: voxels per cell edge G (divisible by 16).
        beta: weight of the KL term (0.0005).
        alpha: weight of the perceptual term (1.0).
    """

    in_channels: int = 4
    n_conditions: int = N_DECILES
    latent_dim: int = 256
    channels: tuple[int, ...] = (32, 64, 128, 256)
    grid: int = 32
    beta: float = 0.0005
    alpha: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.channels) != 4 or min(self.channels) < 1:
            raise ValueError(f"the encoder has 4 blocks; got channels {self.channels}")
        if self.grid % 16 or self.grid < 16:
            raise ValueError(f"grid {self.grid} must be a multiple of 16 (4 max-pools)")
        if min(self.in_channels, self.n_conditions, self.latent_dim) < 1 or self.beta < 0 or self.alpha < 0:
            raise ValueError(f"invalid VAE3DConfig {self}")

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
    """Reconstruction ``(B, C, G, G, G)``, μ and log σ² ``(B, latent_dim)``, and the z used."""

    reconstruction: Tensor
    mu: Tensor
    logvar: Tensor
    z: Tensor


class CondVAE3D(nn.Module):
    """The Cond-DFC-VAE encoder and decoder (equations in the module docstring).

    Shapes:
        x ``(B, 4, G, G, G)``, condition ``(B, 10)`` one-hot → :class:`VAEOutput`.
    """

    def __init__(self, config: VAE3DConfig) -> None:
        super().__init__()
        self.config = config
        c_in = config.in_channels + config.n_conditions
        blocks: list[nn.Module] = []
        for c in config.channels:
            blocks += [nn.Conv3d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm3d(c),
                       nn.LeakyReLU(0.2, inplace=True), nn.MaxPool3d(2)]
            c_in = c
        self.encoder = nn.Sequential(*blocks)
        g = config.bottleneck_grid
        flat = config.channels[-1] * g**3
        self.to_mu = nn.Linear(flat, config.latent_dim)
        self.to_logvar = nn.Linear(flat, config.latent_dim)
        self.from_latent = nn.Linear(config.latent_dim + config.n_conditions, flat)
        widths = list(reversed(config.channels))  # C4, C3, C2, C1
        layers: list[nn.Module] = []
        for i, c in enumerate(widths):
            c_out = widths[i + 1] if i + 1 < len(widths) else widths[-1]
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv3d(c, c_out, 3, padding=1, bias=False),
                       nn.BatchNorm3d(c_out), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv3d(widths[-1], config.in_channels, 3, padding=1))
        self.decoder = nn.Sequential(*layers)

    def encode(self, x: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        """μ and log σ² of q(z | x, y); the condition enters as constant channels.

        Shapes:
            ``(B, 4, G, G, G)``, ``(B, 10)`` → ``(B, latent_dim)`` twice.
        """
        g = x.shape[-1]
        planes = condition[:, :, None, None, None].expand(-1, -1, g, g, g).to(x.dtype)
        h = self.encoder(torch.cat([x, planes], dim=1)).flatten(1)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: Tensor, condition: Tensor) -> Tensor:
        """x' = D([z ; y]).

        Shapes:
            ``(B, latent_dim)``, ``(B, 10)`` → ``(B, 4, G, G, G)``.
        """
        g = self.config.bottleneck_grid
        h = self.from_latent(torch.cat([z, condition.to(z.dtype)], dim=1))
        return self.decoder(h.view(len(z), self.config.channels[-1], g, g, g))

    def forward(self, x: Tensor, condition: Tensor, sample: bool = True) -> VAEOutput:
        """Encode, draw z (μ itself when ``sample`` is false) and decode."""
        mu, logvar = self.encode(x, condition)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        return VAEOutput(self.decode(z, condition), mu, logvar, z)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over latent dimensions, averaged over the batch (nats).

    Shapes:
        ``(B, D)``, ``(B, D)`` → scalar. Zero exactly when μ = 0 and log σ² = 0.
    """
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def perceptual_loss(unet: UNet3D, density: Tensor, reconstructed_density: Tensor) -> Tensor:
    """Σ_l MSE(φ_l(M), φ_l(M')) over the UNet's encoder maps (deep feature consistency).

    The UNet should be frozen (``requires_grad_(False)``, eval mode); gradients still flow
    into ``reconstructed_density``.

    Shapes:
        ``(B, 1, G, G, G)`` twice → scalar.
    """
    with torch.no_grad():
        target = unet.features(density)
    produced = unet.features(reconstructed_density)
    return sum(F.mse_loss(p, t) for p, t in zip(produced, target))


def vae_loss(output: VAEOutput, x: Tensor, config: VAE3DConfig, unet: UNet3D | None) -> tuple[Tensor, dict[str, float]]:
    """L = MSE(x, x') + β·KL + α·Σ_l MSE(φ_l(M), φ_l(M')) (Court et al. 2020).

    Args:
        output: the VAE's forward pass on ``x``.
        x: the input ``(B, 4, G, G, G)``; channel 0 is the density M.
        config: gives β and α.
        unet: the frozen perceptual model; ``None`` drops the perceptual term (a plain Cond-VAE).

    Returns:
        The loss and its parts as floats (``mse``, ``kl``, ``perceptual``, ``loss``).
    """
    mse = F.mse_loss(output.reconstruction, x)
    kl = kl_divergence(output.mu, output.logvar)
    if unet is not None and config.alpha > 0:
        perceptual = perceptual_loss(unet, x[:, :1], output.reconstruction[:, :1])
    else:
        perceptual = torch.zeros((), device=x.device)
    total = mse + config.beta * kl + config.alpha * perceptual
    parts = {"mse": float(mse.detach()), "kl": float(kl.detach()), "perceptual": float(perceptual.detach()),
             "loss": float(total.detach())}
    return total, parts


# --------------------------------------------------------------------------- checkpoints

CHECKPOINT_FORMAT = 1


def save_voxel_model(path, model: nn.Module, extra: dict | None = None) -> None:
    """Write ``{"format", "kind", "config", "state_dict", **extra}`` atomically to ``path``
    (a :class:`UNet3D` or a :class:`CondVAE3D`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = _kind_of(model)
    payload = {"format": CHECKPOINT_FORMAT, "kind": kind, "config": asdict(model.config),
               "state_dict": model.state_dict()}
    payload.update(extra or {})
    tmp = path.with_name(path.name + ".part")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_voxel_model(path, kind: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model written by :func:`save_voxel_model` (``strict=True``, eval mode).

    Args:
        kind: ``"unet3d"`` or ``"cond-dfc-vae"``.

    Returns:
        ``(model, payload)``.

    Raises:
        FileNotFoundError: no such file. ValueError: not a checkpoint of that kind.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no model file at {path}")
    payload = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT or payload.get("kind") != kind:
        raise ValueError(f"{path} is not a matmap {kind} checkpoint (format {CHECKPOINT_FORMAT})")
    if kind == "unet3d":
        model: nn.Module = UNet3D(UNet3DConfig.from_dict(payload["config"]))
    else:
        model = CondVAE3D(VAE3DConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"], strict=True)
    return model.to(device).eval(), payload


def _kind_of(model: nn.Module) -> str:
    if isinstance(model, UNet3D):
        return "unet3d"
    if isinstance(model, CondVAE3D):
        return "cond-dfc-vae"
    raise TypeError(f"not a voxel model: {type(model).__name__}")
