"""A tiny generator learns species: the test that fails if species learning breaks again.

The first CPU generator labelled 1.9 % of atom voxels right (a UNet read the element from the
decoded density), and nothing in the suite noticed. Here the real training entry point
(:func:`ml.training.vae.train_vae`) fits a small :class:`ml.models.vae3d.CondVAE3D` to six cubic
perovskites that share one geometry and differ only in their elements, which recur in other
pairings (Ti with Sr, Ba and Ca; Zr with Ba and Sr): the density is common to all, so every
composition has to come from the species channels and the latent vector. The same
configuration untrained is the negative control. Then :meth:`ml.generation.generative_model.GenerativeModel.reconstruct`
decodes the crystals through the peak decoder and the per-site species vote, and every site
found must carry its own element.

About 25 s of an idle CPU core, 40 s of a busy one (see ``EPOCHS``)."""

from __future__ import annotations

from dataclasses import replace

import torch

from ml.evaluation.sites import match_sites
from ml.generation.generative_model import GenerativeModel
from ml.models.vae3d import CondVAE3D, VAE3DConfig, load_voxel_model
from ml.training.vae import VAETrainConfig, class_lookup, evaluate_loss, species_vocabulary, train_vae, training_rows
from voxel_store import G, TinyDataset, make_store, perovskite

#: Six ABO3 perovskites: id → (cell, formation energy eV/atom, split). All train: the test asks
#: whether the model can learn the species of crystals it has seen, not whether it generalises.
PEROVSKITES = {
    "p-1": (perovskite(3.905, "Sr", "Ti"), -3.5, "train"),
    "p-2": (perovskite(4.19, "Ba", "Zr"), -3.6, "train"),
    "p-3": (perovskite(4.00, "Ba", "Ti"), -3.4, "train"),
    "p-4": (perovskite(4.10, "Sr", "Zr"), -3.7, "train"),
    "p-5": (perovskite(3.84, "Ca", "Ti"), -3.3, "train"),
    "p-6": (perovskite(4.02, "K", "Nb"), -2.9, "train"),
}
#: 200 epochs of two steps. Measured (seed: compositions exact, sites with their element, atom
#: voxels right): seed 0 (the test's): 5/6, 29/30, 97 %; seeds 1, 2, 5: 6/6, 30/30, ≥ 99.5 %;
#: untrained 1–9 % of voxels. At 140 epochs seed 0 still put O on every B site (0/6, 24/30) while
#: seeds 1–5 were exact: the per-site check below is what catches that, not the voxel accuracy (93 %).
EPOCHS = 200


def _config(seed: int = 0) -> VAETrainConfig:
    return VAETrainConfig(
        name="species-test",
        vae=VAE3DConfig(n_species=1, species_embedding=8, latent_dim=8, channels=(8, 8, 16, 16), grid=G),
        lr=1e-2, batch_size=3, epochs=EPOCHS, max_val=None, seed=seed)


def test_a_tiny_generator_learns_the_species_of_a_handful_of_crystals(tmp_path, one_torch_thread):
    arrays, selection = make_store(PEROVSKITES)
    config = _config()
    train, _ = training_rows(arrays, config)
    vocabulary = species_vocabulary(arrays, train)
    lookup = class_lookup(vocabulary)
    assert len(train) == 6 and vocabulary == [8, 19, 20, 22, 38, 40, 41, 56]  # O K Ca Ti Sr Zr Nb Ba

    # negative control: the same configuration, untrained (the weights train_vae starts from)
    torch.manual_seed(config.seed)
    untrained = CondVAE3D(replace(config.vae, n_species=len(vocabulary)))
    before = evaluate_loss(untrained, arrays, train, lookup, "cpu")

    result = train_vae(TinyDataset(arrays), config, tmp_path / "run", tmp_path / "model", arrays=arrays,
                       progress=False)
    assert result["finished"]
    vae, payload = load_voxel_model(tmp_path / "model" / "vae.pt")
    assert payload["vocabulary"] == vocabulary
    after = evaluate_loss(vae, arrays, train, lookup, "cpu")

    assert before["species_voxel_accuracy"] < 0.5, before
    assert after["species_voxel_accuracy"] >= 0.9, after
    assert after["species_ce"] < 0.5 * before["species_ce"]
    assert before["site_count_accuracy"] < 0.5 and after["site_count_accuracy"] == 1.0  # 5 atoms each

    # through the whole decoding path: density peaks → sites, each site's element by vote
    generator = GenerativeModel(vae, payload["vocabulary"], arrays, selection, {}, torch.device("cpu"))
    crystals = generator.reconstruct(list(PEROVSKITES))
    decoded_sites = recalled = exact = 0
    for crystal, (material_id, (true, _, _)) in zip(crystals, PEROVSKITES.items()):
        if crystal.structure is None:
            continue
        # never another crystal's cation, though the model saw each of them in other pairings
        assert set(crystal.structure.composition) <= set(true.composition), (material_id, crystal.formula)
        decoded_sites += len(crystal.structure)
        recalled += match_sites(true, crystal.structure).n_recalled  # within 0.5 Å of a true site of its element
        exact += crystal.structure.composition == true.composition
    assert decoded_sites >= 4 * len(PEROVSKITES)  # at least the A site and the three O of each
    assert recalled >= 0.9 * decoded_sites, (recalled, decoded_sites)
    assert exact >= 4, [(m, c.formula, c.reason) for c, m in zip(crystals, PEROVSKITES)]
