"""The voxel VAE's training objective (``ml/models/vae3d_loss.py``): the KL term, what the
species terms look at, the site-count term, and a tiny fit. Synthetic voxel tensors
(``vae_tensors.py``); CPU, a few seconds."""

from __future__ import annotations

import pytest
import torch

from ml.models.vae3d_loss import kl_divergence, vae_loss
from ml.models.vae3d_slots import EMPTY, slot_targets
from vae_tensors import G, LATENT, TWO, V, tiny_crystals, tiny_vae


def test_kl_divergence_is_the_closed_form_gaussian_kl():
    zero = torch.zeros(5, LATENT)
    assert float(kl_divergence(zero, zero)) == 0.0
    assert float(kl_divergence(torch.ones(5, LATENT), zero)) == pytest.approx(0.5 * LATENT)  # ½ Σ μ², σ = 1
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, LATENT, generator=g), torch.randn(4, LATENT, generator=g)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    expected = torch.distributions.kl_divergence(q, p).sum(dim=1).mean()
    assert float(kl_divergence(mu, logvar)) == pytest.approx(float(expected), rel=1e-5)
    # narrower or wider than N(0, 1) both cost information
    assert float(kl_divergence(zero, torch.full((5, LATENT), -2.0))) > 0
    assert float(kl_divergence(zero, torch.full((5, LATENT), 2.0))) > 0


def test_the_species_terms_ignore_empty_voxels_and_unknown_elements():
    """slot_ce is the cross entropy of each atom voxel's slot (empty voxels ignored); element_ce
    that of each filled slot's element (an element outside the vocabulary takes a slot but is
    never a target); species_ce is their sum."""
    torch.manual_seed(0)
    vae = tiny_vae()
    density, species, lattice, condition = tiny_crystals(2)
    species[0][species[0] == species[0].max()] = V  # crystal 0's second element is outside the vocabulary
    config = vae.config
    voxel_slot, slot_class = slot_targets(species, config.slots, V)
    with torch.no_grad():
        out = vae(density, species, lattice, condition, sample=False)
        _, before = vae_loss(out, density, species, lattice, TWO, config)
        empty = (species == EMPTY).unsqueeze(1).expand_as(out.slot_logits)
        out.slot_logits[empty] += 10 * torch.randn(int(empty.sum()))
        not_target = (slot_class < 0) | (slot_class == V)
        assert int(not_target.sum()) == 1 + 2  # the unknown slot of crystal 0, the empty third slots
        out.element_logits[not_target] += 10 * torch.randn(int(not_target.sum()), V)
        _, after = vae_loss(out, density, species, lattice, TWO, config)
        for term in ("slot_ce", "element_ce", "species_ce"):
            assert after[term] == pytest.approx(before[term], rel=1e-6), term
        atoms = voxel_slot >= 0
        expected_slot = torch.nn.functional.cross_entropy(out.slot_logits.permute(0, 2, 3, 4, 1)[atoms], voxel_slot[atoms])
        known = ~not_target
        expected_element = torch.nn.functional.cross_entropy(out.element_logits[known], slot_class[known])
        assert after["slot_ce"] == pytest.approx(float(expected_slot), rel=1e-5)
        assert after["element_ce"] == pytest.approx(float(expected_element), rel=1e-5)
        assert after["species_ce"] == pytest.approx(after["slot_ce"] + after["element_ce"], rel=1e-6)
        # lowering the right element's logit of a filled slot, or the right slot of the atom voxels, costs
        out.element_logits[known, slot_class[known]] -= 5.0
        right = torch.nn.functional.one_hot(voxel_slot.clamp(min=0), 3).permute(0, 4, 1, 2, 3).bool()
        out.slot_logits[right & atoms.unsqueeze(1)] -= 5.0
        _, worse = vae_loss(out, density, species, lattice, TWO, config)
    assert worse["element_ce"] > after["element_ce"] + 1.0
    assert worse["slot_ce"] > after["slot_ce"] + 1.0


def test_a_batch_without_atoms_has_a_finite_loss_and_no_species_term():
    vae = tiny_vae()
    density, _, lattice, condition = tiny_crystals(2)
    empty = torch.full((2, G, G, G), EMPTY)
    out = vae(density, empty, lattice, condition)
    loss, parts = vae_loss(out, density, empty, lattice, TWO, vae.config)
    loss.backward()
    assert parts["species_ce"] == 0.0 and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in vae.parameters() if p.grad is not None)


def test_the_loss_falls_on_a_tiny_batch():
    torch.manual_seed(0)
    vae = tiny_vae()
    batch = tiny_crystals(4, seed=1)
    density, species, lattice, condition = batch
    optimiser = torch.optim.Adam(vae.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        loss, parts = vae_loss(vae(*batch), density, species, lattice, torch.full((4,), 2), vae.config)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(parts)
    first, last = history[0], history[-1]
    assert last["loss"] < 0.5 * first["loss"]
    for term in ("density_mse", "species_ce", "lattice_mse", "site_count_ce"):
        assert last[term] < first[term], term


def test_the_site_count_term_is_the_cross_entropy_of_the_true_count_and_rejects_impossible_counts():
    torch.manual_seed(0)
    vae = tiny_vae()
    density, species, lattice, condition = tiny_crystals(2)
    with torch.no_grad():
        out = vae(density, species, lattice, condition, sample=False)
        out.site_count_logits.zero_()
        out.site_count_logits[:, 2] = 10.0  # confident of two atoms
        _, right = vae_loss(out, density, species, lattice, TWO, vae.config)
        _, wrong = vae_loss(out, density, species, lattice, torch.tensor([5, 2]), vae.config)
        expected = torch.nn.functional.cross_entropy(out.site_count_logits, torch.tensor([5, 2]))
        assert wrong["site_count_ce"] == pytest.approx(float(expected), rel=1e-5)
        assert right["site_count_ce"] < 0.01 < 3.0 < wrong["site_count_ce"]
        assert wrong["loss"] - right["loss"] == pytest.approx(
            vae.config.site_count_weight * (wrong["site_count_ce"] - right["site_count_ce"]), rel=1e-4)
        for bad in ([0, 2], [2, vae.config.max_sites + 1]):
            with pytest.raises(ValueError, match="site counts"):
                vae_loss(out, density, species, lattice, torch.tensor(bad), vae.config)
