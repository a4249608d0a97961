"""The voxel VAE's element slots (``ml/models/vae3d_slots.py``): each crystal's elements in the
order they first occur in the grid, the same after a rotation about the origin."""

from __future__ import annotations

import torch

from ml.models.vae3d_slots import EMPTY, slot_targets
from vae_tensors import G, V


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
