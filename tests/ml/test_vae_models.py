"""The voxel models of the crystal generator (Court et al. 2020): shapes, the losses' behaviour,
the condition, checkpoints. Synthetic voxel tensors of the real shapes; CPU, a few seconds."""

from __future__ import annotations

import pytest
import torch

from ml.models.unet3d import (
    UNet3D,
    UNet3DConfig,
    predict_species,
    species_class_weights,
    unet_loss,
)
from ml.models.vae3d import (
    CondVAE3D,
    VAE3DConfig,
    kl_divergence,
    load_voxel_model,
    one_hot_decile,
    perceptual_loss,
    save_voxel_model,
    vae_loss,
)

G = 16  # the smallest grid the VAE accepts (4 max-pools); the real one is 32


def _tiny_unet() -> UNet3D:
    return UNet3D(UNet3DConfig(n_species=6, base_channels=4, depth=2, convs_per_level=1, grid=G))


def _tiny_vae(**kw) -> CondVAE3D:
    return CondVAE3D(VAE3DConfig(latent_dim=8, channels=(4, 4, 8, 8), grid=G, **kw))


def _blobs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Densities ``(n, 1, G, G, G)`` with one Gaussian blob per crystal and its species grid."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.arange(G, dtype=torch.float32)
    density = torch.zeros(n, 1, G, G, G)
    species = torch.zeros(n, G, G, G, dtype=torch.long)
    for i in range(n):
        centre = torch.randint(4, G - 4, (3,), generator=g).float()
        z = int(torch.randint(1, 6, (1,), generator=g))
        d2 = sum((axis.view(*[-1 if k == a else 1 for k in range(3)]) - centre[a]) ** 2 for a in range(3))
        density[i, 0] = torch.exp(-d2 / (2 * (0.5 + 0.3 * z) ** 2))
        species[i][d2 <= 4.0] = z
    return density, species


def test_unet_shapes_and_features():
    unet = _tiny_unet()
    out = unet(torch.randn(2, 1, G, G, G))
    assert out.species_logits.shape == (2, 6, G, G, G)
    assert out.occupied_logits.shape == (2, 1, G, G, G)
    maps = unet.features(torch.randn(2, 1, G, G, G))
    assert [m.shape[-1] for m in maps] == [G, G // 2, G // 4]
    assert [m.shape[1] for m in maps] == [4, 8, 16]
    assert predict_species(out).shape == (2, G, G, G)


def test_class_weights_inverse_frequency_background_zero():
    counts = torch.tensor([1000.0, 10.0, 0.0, 40.0])
    w = species_class_weights(counts)
    assert w[0] == 0 and w[2] == 0  # background and unseen species
    assert torch.isclose(w[1] / w[3], torch.tensor(4.0))
    assert torch.isclose((w * counts).sum() / counts[1:].sum(), torch.tensor(1.0))


def test_unet_loss_ignores_species_logits_of_empty_voxels():
    unet = _tiny_unet()
    density, species = _blobs(2)
    weights = torch.tensor([0.0, 1, 1, 1, 1, 1])
    with torch.no_grad():
        out = unet(density)
        _, before = unet_loss(out, species, weights)
        empty = (species == 0).unsqueeze(1).expand_as(out.species_logits)
        out.species_logits[empty] += 10 * torch.randn(int(empty.sum()))
        _, after = unet_loss(out, species, weights)
        assert after["species"] == pytest.approx(before["species"], rel=1e-6)
        assert after["occupied"] == pytest.approx(before["occupied"], rel=1e-6)
        loss_empty, parts_empty = unet_loss(out, torch.zeros_like(species), weights)
    assert parts_empty["species"] == 0.0 and torch.isfinite(loss_empty)


def test_fast_training_loss_equals_the_full_weighted_loss():
    torch.manual_seed(0)
    unet = _tiny_unet().eval()
    density, species = _blobs(3)
    unet.class_weights.copy_(torch.tensor([0.0, 2.0, 0.5, 1.0, 3.0, 1.0]))
    with torch.no_grad():
        full, full_parts = unet_loss(unet(density), species, unet.class_weights)
        fast, fast_parts = unet.loss(density, species)
    assert float(fast) == pytest.approx(float(full), rel=1e-5)
    assert fast_parts["species"] == pytest.approx(full_parts["species"], rel=1e-5)


def test_unet_overfits_a_tiny_batch():
    torch.manual_seed(0)
    unet = _tiny_unet()
    density, species = _blobs(4)
    counts = torch.bincount(species.flatten(), minlength=6).float()
    unet.class_weights.copy_(species_class_weights(counts))
    optimiser = torch.optim.Adam(unet.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss, _ = unet.loss(density, species)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0]
    with torch.no_grad():  # train mode: batch statistics, as fitted
        out = unet(density)
    occupied = species > 0
    best = out.species_logits[:, 1:].argmax(dim=1) + 1
    assert (best[occupied] == species[occupied]).float().mean() > 0.8


def test_vae_shapes():
    vae = _tiny_vae()
    x = torch.randn(3, 4, G, G, G)
    y = one_hot_decile(torch.tensor([0, 4, 9]))
    out = vae(x, y)
    assert out.reconstruction.shape == x.shape
    assert out.mu.shape == out.logvar.shape == out.z.shape == (3, 8)
    with pytest.raises(ValueError):
        one_hot_decile(torch.tensor([10]))
    with pytest.raises(ValueError):
        VAE3DConfig(grid=24)


def test_kl_divergence_behaviour():
    zero = torch.zeros(5, 8)
    assert float(kl_divergence(zero, zero)) == pytest.approx(0.0, abs=1e-7)
    shifted = kl_divergence(torch.ones(5, 8), zero)
    assert float(shifted) == pytest.approx(0.5 * 8)  # ½ Σ μ² with σ = 1
    narrow = kl_divergence(zero, torch.full((5, 8), -2.0))
    assert float(narrow) > 0
    # monotone in |μ|
    assert float(kl_divergence(2 * torch.ones(5, 8), zero)) > float(shifted)


def test_condition_changes_the_decoder_output():
    torch.manual_seed(0)
    vae = _tiny_vae().eval()
    z = torch.randn(1, 8)
    a = vae.decode(z, one_hot_decile(torch.tensor([0])))
    b = vae.decode(z, one_hot_decile(torch.tensor([9])))
    assert (a - b).abs().max() > 1e-4
    # and the encoder sees it too
    x = torch.randn(1, 4, G, G, G)
    mu0, _ = vae.encode(x, one_hot_decile(torch.tensor([0])))
    mu9, _ = vae.encode(x, one_hot_decile(torch.tensor([9])))
    assert (mu0 - mu9).abs().max() > 1e-5


def test_perceptual_loss_zero_on_identity_and_gradients_flow():
    unet = _tiny_unet().eval().requires_grad_(False)
    density, _ = _blobs(2)
    assert float(perceptual_loss(unet, density, density.clone())) == pytest.approx(0.0, abs=1e-10)
    noisy = (density + 0.1 * torch.randn_like(density)).requires_grad_(True)
    loss = perceptual_loss(unet, density, noisy)
    loss.backward()
    assert float(loss.detach()) > 0 and noisy.grad is not None and noisy.grad.abs().sum() > 0
    assert all(p.grad is None for p in unet.parameters())


def test_vae_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    vae = _tiny_vae()
    unet = _tiny_unet().eval().requires_grad_(False)
    density, _ = _blobs(4)
    coords = torch.linspace(0, 1, G).view(1, 1, G, 1, 1).expand(4, 3, G, G, G)
    x = torch.cat([density, coords], dim=1)
    y = one_hot_decile(torch.tensor([1, 2, 3, 4]))
    optimiser = torch.optim.Adam(vae.parameters(), lr=3e-3)
    first = last = None
    for _ in range(30):
        loss, parts = vae_loss(vae(x, y), x, vae.config, unet)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        first = first if first is not None else parts
        last = parts
    assert last["loss"] < 0.5 * first["loss"]
    assert last["mse"] < first["mse"]


def test_checkpoint_round_trip_strict(tmp_path):
    torch.manual_seed(0)
    vae, unet = _tiny_vae().eval(), _tiny_unet().eval()
    unet.class_weights.copy_(torch.arange(6.0))
    save_voxel_model(tmp_path / "vae.pt", vae, {"note": "x"})
    save_voxel_model(tmp_path / "unet.pt", unet)
    vae2, payload = load_voxel_model(tmp_path / "vae.pt", "cond-dfc-vae")
    unet2, _ = load_voxel_model(tmp_path / "unet.pt", "unet3d")
    assert payload["note"] == "x" and vae2.config == vae.config
    x, y = torch.randn(1, 4, G, G, G), one_hot_decile(torch.tensor([3]))
    torch.testing.assert_close(vae2(x, y, sample=False).reconstruction, vae(x, y, sample=False).reconstruction)
    torch.testing.assert_close(unet2.class_weights, unet.class_weights)
    with pytest.raises(ValueError, match="not a matmap unet3d"):
        load_voxel_model(tmp_path / "vae.pt", "unet3d")
    with pytest.raises(FileNotFoundError):
        load_voxel_model(tmp_path / "none.pt", "unet3d")
    state = torch.load(tmp_path / "vae.pt", weights_only=True)
    state["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_voxel_model(tmp_path / "bad.pt", "cond-dfc-vae")
