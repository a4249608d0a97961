"""The voxel VAE's model (``ml/models/vae3d.py``, after Court et al. 2020, with species
channels): shapes of every output, the tied element embedding, the condition, the slot mixture,
checkpoints, and the periodic (circular) encoder. Synthetic voxel tensors of the real shapes
(``vae_tensors.py``); CPU, a few seconds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ml.models.vae3d import CondVAE3D, load_voxel_model, one_hot_decile, position_channels, save_voxel_model
from ml.models.vae3d_slots import EMPTY, slot_targets
from vae_tensors import E, G, LATENT, V, tiny_config, tiny_crystals, tiny_vae


# --------------------------------------------------------------------------- shapes and inputs


def test_every_output_has_its_documented_shape():
    vae = tiny_vae()
    density, species, lattice, condition = tiny_crystals(3)
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
    vae = tiny_vae().eval()
    density, species, lattice, condition = tiny_crystals(2)
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
        tiny_config(grid=24)
    with pytest.raises(ValueError, match="4 blocks"):
        tiny_config(channels=(4, 8, 8))
    with pytest.raises(ValueError, match="≥ 0"):
        tiny_config(beta=-1.0)
    with pytest.raises(ValueError):
        tiny_config(n_species=0)
    with pytest.raises(ValueError, match="0..9"):
        one_hot_decile(torch.tensor([10]))
    with pytest.raises(ValueError, match="0..9"):
        one_hot_decile(torch.tensor([-1]))
    assert one_hot_decile(torch.tensor([0, 9])).tolist()[1] == [0.0] * 9 + [1.0]
    assert tiny_config(channels=[4, 4, 8, 8]).channels == (4, 4, 8, 8)  # lists from a JSON checkpoint


# --------------------------------------------------------------------------- the condition


def test_the_condition_changes_the_decoder_and_the_encoder():
    torch.manual_seed(0)
    vae = tiny_vae().eval()
    z = torch.randn(1, LATENT)
    with torch.no_grad():
        low = vae.decode(z, one_hot_decile(torch.tensor([0])))
        high = vae.decode(z, one_hot_decile(torch.tensor([9])))
        for a, b in zip(low[:3], high[:3]):  # density, species logits, cell length (the count is an argmax)
            assert (a - b).abs().max() > 1e-4
        density, species, lattice, _ = tiny_crystals(1)
        mu0, _ = vae.encode(density, species, lattice, one_hot_decile(torch.tensor([0])))
        mu9, _ = vae.encode(density, species, lattice, one_hot_decile(torch.tensor([9])))
    assert (mu0 - mu9).abs().max() > 1e-5


# --------------------------------------------------------------------------- elements


def test_element_logits_pick_the_nearest_element_embedding():
    """ℓ_k(e) = −‖v_k − e_e‖² against the encoder's own embedding table (tied weights): a slot
    vector equal to element k's embedding gives logit 0 for k and a negative logit for every other
    element; the "unknown" row of the table is never predicted."""
    torch.manual_seed(0)
    vae = tiny_vae().requires_grad_(False)
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


# --------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_is_strict(tmp_path):
    torch.manual_seed(0)
    vae = tiny_vae().eval()
    with torch.no_grad():
        for bn in (m for m in vae.modules() if isinstance(m, nn.BatchNorm3d)):
            bn.running_mean.uniform_(-0.1, 0.1)  # buffers travel too
    save_voxel_model(tmp_path / "vae.pt", vae, {"vocabulary": [11, 17, 38, 22, 8]})
    loaded, payload = load_voxel_model(tmp_path / "vae.pt")
    assert payload["vocabulary"] == [11, 17, 38, 22, 8] and loaded.config == vae.config
    assert not loaded.training  # ready for inference
    batch = tiny_crystals(2)
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
    vae = tiny_vae()
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
    vae = tiny_vae().eval()
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
    density, species, lattice, condition = tiny_crystals(2, seed=3)
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
    density, species, lattice, condition = tiny_crystals(2, seed=3)
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
