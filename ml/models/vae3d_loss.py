"""The training objective of the voxel VAE (:class:`ml.models.vae3d.CondVAE3D`)::

    L = w_M · MSE(M, M') + w_S · [CE(k(S), s | atom voxels) + CE(c_k, ℓ_k | filled slots)]
        + w_a · (a − a')²/scale² + w_n · CE(n, n') + β · KL(q ‖ N(0, I))

with the symbols of :mod:`ml.models.vae3d` (M the density grid, S the species grid, k(S) the slot
of each atom voxel and c_k the element of slot k from :func:`ml.models.vae3d_slots.slot_targets`,
s and ℓ the decoded slot and element logits, a the cubic cell length in Å, n the site count) and
the weights of :class:`ml.models.vae3d.VAE3DConfig`. Court et al.'s loss is MSE + β·KL + a
perceptual term; the species, cell-length and site-count terms replace the UNet and its
perceptual features (see :mod:`ml.models.vae3d`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ml.models.vae3d import VAE3DConfig, VAEOutput
from ml.models.vae3d_slots import EMPTY, slot_targets


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) summed over latent dimensions, averaged over the batch (nats).

    Shapes:
        ``(B, D)``, ``(B, D)`` → scalar. Zero exactly when μ = 0 and log σ² = 0.
    """
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def slot_losses(slot_logits: Tensor, element_logits: Tensor, species: Tensor,
                config: VAE3DConfig) -> tuple[Tensor, Tensor]:
    """The two species terms, with the slots of :func:`slot_targets` (elements by first occurrence).

    Args:
        slot_logits: ``(B, K, G, G, G)``; element_logits: ``(B, K, V)``; species ``(B, G, G, G)``
            class indices (−1 empty; V, an element outside the vocabulary, takes a slot but is never
            an element target).

    Returns:
        ``slot_ce``: mean over the batch's atom voxels of −log softmax(s) of the voxel's slot;
        ``element_ce``: mean over the batch's filled slots of −log softmax(ℓ) of the slot's element.
        Zero (with a gradient) where there is nothing to score.
    """
    voxel_slot, slot_class = slot_targets(species, config.slots, config.n_species)
    zero = slot_logits.sum() * 0.0 + element_logits.sum() * 0.0
    slot_ce = F.cross_entropy(slot_logits, voxel_slot, ignore_index=EMPTY) if bool((voxel_slot >= 0).any()) else zero
    slot_class = slot_class.masked_fill(slot_class >= config.n_species, EMPTY)  # "unknown" is never a target
    if bool((slot_class >= 0).any()):
        element_ce = F.cross_entropy(element_logits.flatten(0, 1), slot_class.flatten(), ignore_index=EMPTY)
    else:
        element_ce = zero
    return slot_ce, element_ce


def vae_loss(output: VAEOutput, density: Tensor, species: Tensor, lattice: Tensor, n_sites: Tensor,
             config: VAE3DConfig) -> tuple[Tensor, dict[str, float]]:
    """The loss L of the module docstring.

    Args:
        output: the forward pass.
        density: ``(B, G, G, G)`` true M; species ``(B, G, G, G)`` true class indices (−1 empty,
            ignored; V unknown: takes a slot, but is never an element target); lattice ``(B,)`` true a, Å;
            n_sites ``(B,)`` int64 true number of atoms in the cell.

    Returns:
        The loss and its parts as floats (``density_mse``; ``species_ce`` = ``slot_ce`` (which
        slot each atom voxel holds) + ``element_ce`` (which element each filled slot holds);
        ``lattice_mse`` in (Å/scale)², ``site_count_ce``, ``kl``, ``loss``).

    Raises:
        ValueError: a site count outside 1 … ``config.max_sites``.
    """
    if n_sites.numel() and (int(n_sites.min()) < 1 or int(n_sites.max()) > config.max_sites):
        raise ValueError(f"site counts must lie in 1..{config.max_sites}")
    density_mse = F.mse_loss(output.density[:, 0], density)
    slot_ce, element_ce = slot_losses(output.slot_logits, output.element_logits, species, config)
    species_ce = slot_ce + element_ce
    lattice_mse = F.mse_loss(output.lattice / config.lattice_scale, lattice / config.lattice_scale)
    site_count_ce = F.cross_entropy(output.site_count_logits, n_sites.long())
    kl = kl_divergence(output.mu, output.logvar)
    total = (config.density_weight * density_mse + config.species_weight * species_ce
             + config.lattice_weight * lattice_mse + config.site_count_weight * site_count_ce + config.beta * kl)
    parts = {"density_mse": float(density_mse.detach()), "species_ce": float(species_ce.detach()),
             "slot_ce": float(slot_ce.detach()), "element_ce": float(element_ce.detach()),
             "lattice_mse": float(lattice_mse.detach()), "site_count_ce": float(site_count_ce.detach()),
             "kl": float(kl.detach()), "loss": float(total.detach())}
    return total, parts
