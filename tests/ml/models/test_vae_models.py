"""The crystal generator's model (``ml/models/vae3d.py``, after Court et al. 2020, with species
channels): shapes of every output, the tied element embedding, the KL term, the condition, what
the loss looks at, a tiny fit, checkpoints, and the periodic (circular) encoder. Synthetic voxel
tensors of the real shapes; CPU, a few seconds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ml.models.vae3d import (
    EMPTY,
    CondVAE3D,
    VAE3DConfig,
    kl_divergence,
    load_voxel_model,
    one_hot_decile,
    position_channels,
    save_voxel_model,
    slot_targets,
    vae_loss,
)

G = 16  # the smallest grid the model accepts (4 max-pools)
V = 5  # element classes in the tiny vocabulary
E = 3  # element embedding length
LATENT = 8
TWO = torch.tensor([2, 2])  # the site count of two crystals of :func:`_crystals`


def _config(**kw) -> VAE3DConfig:
    return VAE3DConfig(**{"n_species": V, "species_embedding": E, "latent_dim": LATENT, "channels": (4, 4, 8, 8),
                          "grid": G, **kw})


def _tiny_vae(**kw) -> CondVAE3D:
    return CondVAE3D(_config(**kw))


def _crystals(n: int, seed: int = 0):
    """``n`` synthetic crystals of two atoms each: density ``(n, G, G, G)`` (unit Gaussians),
    species ``(n, G, G, G)`` class indices (−1 empty) of two different elements, cell length
    ``(n,)`` Å and one-hot deciles ``(n, 10)``."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.arange(G, dtype=torch.float32)
    density = torch.zeros(n, G, G, G)
    species = torch.full((n, G, G, G), EMPTY, dtype=torch.long)
    for i in range(n):
        elements = torch.randperm(V, generator=g)[:2]
        for atom, element in enumerate(elements):
            centre = torch.randint(0, G, (3,), generator=g).float() if atom == 0 else (centre + G / 2) % G
            delta = [(axis - centre[k] + G / 2) % G - G / 2 for k in range(3)]  # periodic offsets
            d2 = delta[0][:, None, None] ** 2 + delta[1][None, :, None] ** 2 + delta[2][None, None, :] ** 2
            density[i] += torch.exp(-d2 / (2 * 1.2**2))
            species[i][d2 <= 4.0] = int(element)
    lattice = 3.0 + 3.0 * torch.rand(n, generator=g)
    condition = one_hot_decile(torch.randint(0, 10, (n,), generator=g))
    return density, species, lattice, condition


# --------------------------------------------------------------------------- shapes and inputs


def test_every_output_has_its_documented_shape():
    vae = _tiny_vae()
    density, species, lattice, condition = _crystals(3)
    out = vae(density, species, lattice, condition)
    assert out.density.shape == (3, 1, G, G, G)
    assert out.species_logits.shape == (3, V, G, G, G)
    assert out.lattice.shape == (3,)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (3, LATENT)
    assert out.site_count_logits.shape == (3, vae.config.max_sites + 1)
    decoded = vae.decode(out.mu, condition)
    assert [tuple(t.shape) for t in decoded] == [(3, 1, G, G, G), (3, V, G, G, G), (3,), (3,)]
    assert decoded.n_sites.dtype == torch.int64
    assert bool(((decoded.n_sites >= 0) & (decoded.n_sites <= vae.config.max_sites)).all())
    # a fresh model samples z with σ ≈ e⁻² ≈ 0.14, so the decoder is not drowned in noise at first
    assert float(out.logvar.detach().mean()) == pytest.approx(-4.0, abs=1.0)


def test_encoder_input_paints_the_element_embedding_on_occupied_voxels_only():
    vae = _tiny_vae().eval()
    density, species, lattice, condition = _crystals(2)
    species[0, 0, 0, 0] = V  # an element outside the vocabulary: the "unknown" class
    x = vae.encoder_input(density, species, lattice, condition)
    K = vae.config.slots
    assert x.shape == (2, 1 + E + K + 1 + 10, G, G, G)
    torch.testing.assert_close(x[:, 0], density)
    embedded = x[:, 1 : 1 + E].permute(0, 2, 3, 4, 1)  # (B, G, G, G, E)
    empty = species == EMPTY
    assert torch.all(embedded[empty] == 0)
    occupied = species >= 0
    torch.testing.assert_close(embedded[occupied], vae.embedding.weight[species[occupied]])
    torch.testing.assert_close(embedded[0, 0, 0, 0], vae.embedding.weight[V])  # unknown has its own row
    # one-hot slot planes: each atom voxel marks its element's slot (first occurrence), empty voxels none
    planes = x[:, 1 + E : 1 + E + K]
    voxel_slot, _ = slot_targets(species, K, V)
    assert torch.all(planes.sum(dim=1)[empty] == 0) and torch.all(planes.sum(dim=1)[occupied] == 1)
    assert torch.equal(planes.argmax(dim=1)[occupied], voxel_slot[occupied])
    torch.testing.assert_close(x[:, 1 + E + K], (lattice / vae.config.lattice_scale)[:, None, None, None].expand(-1, G, G, G))
    torch.testing.assert_close(x[:, 2 + E + K :], condition[:, :, None, None, None].expand(-1, -1, G, G, G))


def test_position_channels_give_every_voxel_its_own_periodic_code():
    """The decoder's fixed channels sin, cos(2π k i / G), k = 1, 2, 4 on each axis: periodic in the
    cell, and different for every voxel (so the decoder can tell voxel 0 from voxel 2)."""
    p = position_channels(G, torch.zeros(1))
    assert p.shape == (1, 18, G, G, G) and float(p.abs().max()) <= 1.0
    codes = p[0].reshape(18, -1).T  # (G³, 18)
    assert len(torch.unique(codes.round(decimals=5), dim=0)) == G**3
    i = torch.arange(G, dtype=torch.float32)
    torch.testing.assert_close(p[0, 0, :, 3, 5], torch.sin(2 * torch.pi * i / G))  # axis 0, k = 1
    torch.testing.assert_close(p[0, 11, 7, :, 2], torch.cos(2 * torch.pi * 4 * i / G))  # axis 1, k = 4
    assert torch.all(p[0, 11, 7, 3, :] == p[0, 11, 7, 3, 0])  # constant along the other axes
    # periodic: the last voxel's code is as close to the first's as any two neighbours are
    step = (codes.view(G, G, G, 18)[1:, 0, 0] - codes.view(G, G, G, 18)[:-1, 0, 0]).norm(dim=1)
    wrap = (codes.view(G, G, G, 18)[0, 0, 0] - codes.view(G, G, G, 18)[G - 1, 0, 0]).norm()
    assert float(wrap) == pytest.approx(float(step[0]), rel=1e-5)
    torch.testing.assert_close(step, step[0].expand(G - 1))


def test_configuration_and_condition_are_validated():
    with pytest.raises(ValueError, match="multiple of 16"):
        _config(grid=24)
    with pytest.raises(ValueError, match="4 blocks"):
        _config(channels=(4, 8, 8))
    with pytest.raises(ValueError, match="≥ 0"):
        _config(beta=-1.0)
    with pytest.raises(ValueError):
        _config(n_species=0)
    with pytest.raises(ValueError, match="0..9"):
        one_hot_decile(torch.tensor([10]))
    with pytest.raises(ValueError, match="0..9"):
        one_hot_decile(torch.tensor([-1]))
    assert one_hot_decile(torch.tensor([0, 9])).tolist()[1] == [0.0] * 9 + [1.0]
    assert _config(channels=[4, 4, 8, 8]).channels == (4, 4, 8, 8)  # lists from a JSON checkpoint


# --------------------------------------------------------------------------- KL and condition


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


def test_the_condition_changes_the_decoder_and_the_encoder():
    torch.manual_seed(0)
    vae = _tiny_vae().eval()
    z = torch.randn(1, LATENT)
    with torch.no_grad():
        low = vae.decode(z, one_hot_decile(torch.tensor([0])))
        high = vae.decode(z, one_hot_decile(torch.tensor([9])))
        for a, b in zip(low[:3], high[:3]):  # density, species logits, cell length (the count is an argmax)
            assert (a - b).abs().max() > 1e-4
        density, species, lattice, _ = _crystals(1)
        mu0, _ = vae.encode(density, species, lattice, one_hot_decile(torch.tensor([0])))
        mu9, _ = vae.encode(density, species, lattice, one_hot_decile(torch.tensor([9])))
    assert (mu0 - mu9).abs().max() > 1e-5


# --------------------------------------------------------------------------- elements and the loss


def test_element_logits_pick_the_nearest_element_embedding():
    """ℓ_k(e) = −‖v_k − e_e‖² against the encoder's own embedding table (tied weights): a slot
    vector equal to element k's embedding gives logit 0 for k and a negative logit for every other
    element; the "unknown" row of the table is never predicted."""
    torch.manual_seed(0)
    vae = _tiny_vae().requires_grad_(False)
    table = vae.embedding.weight.clone()  # (V + 1, E)
    classes = torch.randint(0, V, (2, 3))
    vectors = table[classes]  # (B, K, E)
    logits = vae.element_logits(vectors)
    assert logits.shape == (2, 3, V)
    assert torch.equal(logits.argmax(dim=-1), classes)
    torch.testing.assert_close(logits.gather(2, classes[..., None])[..., 0], torch.zeros(2, 3), atol=1e-5, rtol=0)
    assert float(logits.max()) <= 1e-5
    unknown = vae.element_logits(table[V][None, None])
    assert unknown.shape[-1] == V  # scored against the V known elements only
    torch.testing.assert_close(unknown[0, 0], -((table[V] - table[:V]) ** 2).sum(dim=1))
    # the table is shared: moving element 2's embedding moves what the decoder's vectors mean
    vae.embedding.weight[2] += 1.0
    assert not torch.equal(vae.element_logits(vectors), logits)


def test_slot_targets_order_each_crystals_elements_by_first_occurrence():
    """Slot 0 is the element of voxel (0, 0, 0) (the origin site), then the others in raster order,
    whatever their atomic numbers."""
    species = torch.full((3, G, G, G), EMPTY)
    species[0, 0, 0, 0], species[0, 1, 1, 1], species[0, 2, 2, 2] = 4, 1, 3  # three elements
    species[0, 3, 3, 3] = 1  # a second voxel of the second element
    species[1, 5, 5, 5] = 2  # one element
    species[2, 0, 0, 0], species[2, 1, 1, 1] = V, 0  # an element outside the vocabulary takes a slot too
    voxel_slot, slot_class = slot_targets(species, 3, V)
    assert slot_class.tolist() == [[4, 1, 3], [2, EMPTY, EMPTY], [V, 0, EMPTY]]
    assert [int(voxel_slot[0, i, i, i]) for i in range(4)] == [0, 1, 2, 1]
    assert int(voxel_slot[1, 5, 5, 5]) == 0 and int(voxel_slot[2, 0, 0, 0]) == 0 and int(voxel_slot[2, 1, 1, 1]) == 1
    assert int((voxel_slot >= 0).sum()) == 7  # empty voxels have no slot
    # a fourth element does not fit in K = 3 slots: its voxels are left out, the first three kept
    species[0, 4, 4, 4] = 0
    voxel_slot, slot_class = slot_targets(species, 3, V)
    assert slot_class[0].tolist() == [4, 1, 3] and int(voxel_slot[0, 4, 4, 4]) == EMPTY
    # the order is the same after a rotation about the origin: the origin's element stays slot 0
    from ml.generation.rotations import rotate90
    turned = torch.stack([torch.as_tensor(rotate90(species[0].numpy(), r)) for r in range(24)])
    _, turned_class = slot_targets(turned, 3, V)
    assert torch.all(turned_class[:, 0] == 4)


def test_species_log_probs_are_the_slot_mixture():
    """p(e | voxel) = Σ_k softmax(s)_k softmax(ℓ_k)(e): a voxel sure of its slot takes that slot's
    element, and the probabilities over the V elements sum to 1."""
    slot_logits = torch.zeros(1, 3, G, G, G)
    slot_logits[0, 1] = 20.0  # every voxel holds slot 1 ...
    slot_logits[0, :, 0, 0, 0] = torch.tensor([20.0, 0.0, 0.0])  # ... but voxel (0, 0, 0) holds slot 0
    element_logits = torch.full((1, 3, V), -20.0)
    element_logits[0, 0, 2] = element_logits[0, 1, 4] = element_logits[0, 2, 0] = 0.0
    log_p = CondVAE3D.species_log_probs(slot_logits, element_logits)
    assert log_p.shape == (1, V, G, G, G)
    torch.testing.assert_close(log_p.exp().sum(dim=1), torch.ones(1, G, G, G))
    best = log_p.argmax(dim=1)[0]
    assert int(best[0, 0, 0]) == 2 and int((best == 4).sum()) == G**3 - 1


def test_the_species_terms_ignore_empty_voxels_and_unknown_elements():
    """slot_ce is the cross entropy of each atom voxel's slot (empty voxels ignored); element_ce
    that of each filled slot's element (an element outside the vocabulary takes a slot but is
    never a target); species_ce is their sum."""
    torch.manual_seed(0)
    vae = _tiny_vae()
    density, species, lattice, condition = _crystals(2)
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
    vae = _tiny_vae()
    density, _, lattice, condition = _crystals(2)
    empty = torch.full((2, G, G, G), EMPTY)
    out = vae(density, empty, lattice, condition)
    loss, parts = vae_loss(out, density, empty, lattice, TWO, vae.config)
    loss.backward()
    assert parts["species_ce"] == 0.0 and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in vae.parameters() if p.grad is not None)


def test_the_loss_falls_on_a_tiny_batch():
    torch.manual_seed(0)
    vae = _tiny_vae()
    batch = _crystals(4, seed=1)
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


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_is_strict(tmp_path):
    torch.manual_seed(0)
    vae = _tiny_vae().eval()
    with torch.no_grad():
        for bn in (m for m in vae.modules() if isinstance(m, nn.BatchNorm3d)):
            bn.running_mean.uniform_(-0.1, 0.1)  # buffers travel too
    save_voxel_model(tmp_path / "vae.pt", vae, {"vocabulary": [11, 17, 38, 22, 8]})
    loaded, payload = load_voxel_model(tmp_path / "vae.pt")
    assert payload["vocabulary"] == [11, 17, 38, 22, 8] and loaded.config == vae.config
    assert not loaded.training  # ready for inference
    batch = _crystals(2)
    with torch.no_grad():
        a, b = vae(*batch, sample=False), loaded(*batch, sample=False)
    for name in ("density", "species_logits", "lattice", "mu", "logvar"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0)
    assert not (tmp_path / "vae.pt.part").exists()

    with pytest.raises(FileNotFoundError):
        load_voxel_model(tmp_path / "none.pt")
    state = torch.load(tmp_path / "vae.pt", weights_only=True)
    state["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match="another layout.*Unexpected key"):  # strict: no weight left over
        load_voxel_model(tmp_path / "extra.pt")
    with pytest.raises(TypeError, match="not a voxel VAE"):
        save_voxel_model(tmp_path / "x.pt", nn.Linear(2, 2))


def test_an_old_or_foreign_file_is_refused_with_a_clear_error(tmp_path):
    vae = _tiny_vae()
    # the earlier generator's checkpoint (format 1: UNet + Cond-DFC-VAE)
    torch.save({"format": 1, "kind": "cond-dfc-vae", "config": {}, "state_dict": vae.state_dict()}, tmp_path / "old.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    for name in ("old.pt", "tensor.pt"):
        with pytest.raises(ValueError, match="not a matmap generator checkpoint.*train-vae"):
            load_voxel_model(tmp_path / name)
    # format 2 written by an earlier layout of this model: a config field or weights it no longer has.
    # The app catches ValueError to show the retrain command, so these must not be a TypeError or a
    # RuntimeError.
    save_voxel_model(tmp_path / "vae.pt", vae)
    state = torch.load(tmp_path / "vae.pt", weights_only=True)
    state["config"]["composition_weight"] = 1.0
    torch.save(state, tmp_path / "old-config.pt")
    state = torch.load(tmp_path / "vae.pt", weights_only=True)
    state["state_dict"]["species_head.weight"] = state["state_dict"].pop("density_head.weight")
    torch.save(state, tmp_path / "old-weights.pt")
    for name, detail in (("old-config.pt", "composition_weight"), ("old-weights.pt", "Missing key")):
        with pytest.raises(ValueError, match=f"another layout.*{detail}.*train-vae"):
            load_voxel_model(tmp_path / name)


# --------------------------------------------------------------------------- a periodic encoder


def _blocks(vae: CondVAE3D, x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of the encoder's 4 blocks (conv, BN, LeakyReLU, max-pool): grids G/2 … G/16."""
    outs = []
    for i, layer in enumerate(vae.encoder):
        x = layer(x)
        if i % 4 == 3:
            outs.append(x)
    return outs


def _encoder(padding_mode: str) -> CondVAE3D:
    torch.manual_seed(0)
    vae = _tiny_vae().eval()
    for conv in (m for m in vae.encoder if isinstance(m, nn.Conv3d)):
        conv.padding_mode = padding_mode
    return vae


@pytest.mark.parametrize("shift", [(2, 0, 0), (0, 4, 2), (8, 8, 8), (8, 0, 8)])
def test_a_translated_crystal_gives_translated_encoder_maps(shift):
    """The grid is one periodic cell: moving every atom by whole voxels (torch.roll) moves the
    feature maps of each block by shift / 2^block voxels, where that is whole. At G = 16 the last
    block pools a 2³ map to one voxel, so half-cell translations (8 voxels, e.g. the body
    centring of CsCl) leave μ unchanged. The slot order is anchored at the origin by design
    (:func:`slot_targets`), so the crystals here have one element each, whose slot a translation
    cannot change."""
    vae = _encoder("circular")
    density, species, lattice, condition = _crystals(2, seed=3)
    species = species.clamp(max=0)  # every atom the same element
    dims = (1, 2, 3)
    rolled = (torch.roll(density, shift, dims), torch.roll(species, shift, dims), lattice, condition)
    with torch.no_grad():
        plain = _blocks(vae, vae.encoder_input(density, species, lattice, condition))
        moved = _blocks(vae, vae.encoder_input(*rolled))
        for block, (a, b) in enumerate(zip(plain, moved), start=1):
            step = 2**block
            if all(s % step == 0 for s in shift):
                torch.testing.assert_close(b, torch.roll(a, tuple(s // step for s in shift), (2, 3, 4)))
        mu, _ = vae.encode(density, species, lattice, condition)
        mu_moved, _ = vae.encode(*rolled)
    if all(s % 8 == 0 for s in shift):
        torch.testing.assert_close(mu_moved, mu)


def test_translation_invariance_of_mu_comes_from_the_circular_padding():
    density, species, lattice, condition = _crystals(2, seed=3)
    species = species.clamp(max=0)  # one element per crystal: its slot does not depend on the origin
    rolled = (torch.roll(density, 8, 1), torch.roll(species, 8, 1), lattice, condition)
    with torch.no_grad():
        circular = _encoder("circular")
        torch.testing.assert_close(circular.encode(*rolled)[0], circular.encode(density, species, lattice, condition)[0])
        # one voxel is not a symmetry of the pooling grid: μ moves
        one = (torch.roll(density, 1, 1), torch.roll(species, 1, 1), lattice, condition)
        assert (circular.encode(*one)[0] - circular.encode(density, species, lattice, condition)[0]).abs().max() > 1e-4
        zeros = _encoder("zeros")  # the same weights with zero padding: the cell's faces become walls
        assert (zeros.encode(*rolled)[0] - zeros.encode(density, species, lattice, condition)[0]).abs().max() > 1e-4


def test_the_site_count_term_is_the_cross_entropy_of_the_true_count_and_rejects_impossible_counts():
    torch.manual_seed(0)
    vae = _tiny_vae()
    density, species, lattice, condition = _crystals(2)
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
