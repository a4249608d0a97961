"""Decoding grids into crystals (``ml/generation/decode.py``): the true grids of six hand-built
crystals decode to themselves, the decoded site count drops a hedged sub-lattice, sites sit at
voxel centres unless refined."""

from __future__ import annotations

import numpy as np
import pytest

from ml.evaluation.sites import match_sites
from ml.generation.decode import certain_log_probs, decode_crystal
from ml.generation.voxels import VoxelDecodeError
from ml.training.vae import class_lookup, species_vocabulary
from voxel_store import G


def test_decoding_the_true_grids_recovers_every_crystal(store):
    arrays, _, structures = store
    vocabulary = species_vocabulary(arrays, np.arange(len(arrays)))
    lookup = class_lookup(vocabulary)
    for row, (material_id, true) in enumerate(structures.items()):
        classes = lookup[np.asarray(arrays.species[row])]
        decoded = decode_crystal(np.asarray(arrays.density[row], np.float32), certain_log_probs(classes, len(vocabulary)),
                                 float(arrays.lattice[row][0]), vocabulary)
        assert decoded.composition == true.composition, material_id
        assert len(decoded) == len(true)
        assert match_sites(true, decoded).n_recalled == len(true)
        max_distance = max(true.lattice.get_all_distances(true.frac_coords, decoded.frac_coords).min(axis=1))
        assert max_distance < 0.05, (material_id, max_distance)
        assert decoded.lattice.abc == pytest.approx(true.lattice.abc, abs=1e-3)


def test_the_decoded_site_count_drops_a_hedged_sub_lattice_that_a_threshold_keeps(store):
    """A decoder that hedges between rock salt and a filled sub-lattice paints weaker peaks (0.6)
    on the empty sites: a threshold of 0.5 takes them as atoms, the decoded count (8) does not."""
    arrays, _, structures = store
    vocabulary = species_vocabulary(arrays, np.arange(len(arrays)))
    lookup = class_lookup(vocabulary)
    row = list(structures).index("x-2")  # NaCl, 8 sites in the conventional cell
    true = structures["x-2"]
    density = np.asarray(arrays.density[row], np.float32)
    classes = lookup[np.asarray(arrays.species[row])]
    log_probs = certain_log_probs(classes, len(vocabulary))
    hedged = density + 0.6 * np.roll(density, (G // 4, G // 4, G // 4), axis=(0, 1, 2))  # the tetrahedral holes
    hedged = np.minimum(hedged, 1.0)
    a = float(arrays.lattice[row][0])
    assert len(decode_crystal(hedged, log_probs, a, vocabulary, peak_threshold=0.5)) > len(true)
    decoded = decode_crystal(hedged, log_probs, a, vocabulary, n_sites=len(true))
    assert len(decoded) == len(true) and decoded.composition == true.composition
    assert max(true.lattice.get_all_distances(true.frac_coords, decoded.frac_coords).min(axis=1)) < 0.05
    with pytest.raises(VoxelDecodeError, match="negative"):
        decode_crystal(hedged, log_probs, a, vocabulary, n_sites=-1)


def test_sites_sit_at_voxel_centres_unless_refined():
    """One Gaussian 0.3 voxel off a voxel centre: the default decoder places the atom at the
    centre (the grid's resolution), ``refine=True`` at the Gaussian's own centre."""
    axis = np.arange(G, dtype=np.float64)
    centre = np.array([4.3, 8.0, 12.0])
    d2 = sum(((axis - centre[k] + G / 2) % G - G / 2).reshape([-1 if j == k else 1 for j in range(3)]) ** 2
             for k in range(3))
    density = np.exp(-d2 / (2 * 1.2**2))
    log_probs = np.zeros((1, G, G, G))
    snapped = decode_crystal(density, log_probs, 4.0, [11])
    refined = decode_crystal(density, log_probs, 4.0, [11], refine=True)
    assert snapped.frac_coords[0] * G == pytest.approx([4.0, 8.0, 12.0])
    assert refined.frac_coords[0] * G == pytest.approx(centre, abs=0.02)
