"""The element slots of the voxel VAE (:mod:`ml.models.vae3d`): which element of a crystal each
of the K slots holds, and which slot each atom voxel holds, read off a species grid.

Why supervised slots, ordered by first occurrence: the crystal's elements are a global read-out
of z (K vectors in the embedding space, one shared regression learnt from every crystal) and each
voxel only chooses which of the K slots it holds (a K-way, local decision). The order of the
slots decides how hard that local decision is. Measured on the 300 validation crystals
(fraction of atom voxels whose most likely element is right, after epochs 1 / 2):

- slots left latent, the mixed vector Σ_k w_k v_k scored against the table (session 5):
  47 % / 57 % (73 % after 9 epochs, 59 min; species recall on sites 62.7 %);
- slots ordered by atomic number, convolutional decoder only: 45.8 % / 49.8 %; the element of
  each slot was learnt at once (slot-element cross entropy 0.009) but the slot map stayed near
  chance (0.96 nats): which site holds the lighter element differs from crystal to crystal of one
  prototype, a non-local decision a decoder up-sampled from 2³ does not make;
- the same with the loss minimised over the K! slot permutations: 43.5 % / 49.5 %;
- atomic-number order plus the coarse position-specific head (:mod:`ml.models.vae3d`): 55.8 % / 57.9 %, and
  58.8 % after 6 epochs (slot map still 0.87 nats);
- **first occurrence in the grid** (this design): 95.9 % / 96.3 %, the slot map learnt
  (0.13 → 0.12 nats; final numbers in the model card). The element on the origin site is slot 0
  in every crystal (rotations turn about the origin), so the slot map is the same for every
  crystal of a prototype, and which element sits where is carried by the slot vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Species-grid value of an empty voxel (and the cross-entropy ``ignore_index``).
EMPTY = -1


def slot_targets(species: Tensor, slots: int, n_species: int) -> tuple[Tensor, Tensor]:
    """The supervised slots of a batch: the distinct elements of each crystal fill the K slots in
    the order in which they first occur in the grid's raster order (voxel (0, 0, 0) first).

    The order follows the geometry, not the chemistry: the element on the origin site is slot 0
    in every crystal that has one (the 90° rotations of :func:`ml.generation.rotations.rotate90` turn about
    the origin and keep it there), so the map of slots over the cell is the same for every
    crystal of a prototype and the elements themselves are read from z. Ordering by atomic
    number made that map depend on which element is the heavier one, and the decoder learnt it
    barely above chance (the module docstring gives the measurements).

    Args:
        species: ``(B, G, G, G)`` int64 class indices (−1 empty, ``n_species`` for an element
            outside the vocabulary, which takes a slot like any element).
        slots: K.

    Returns:
        ``voxel_slot`` ``(B, G, G, G)``: the slot index of each atom voxel (−1 on empty voxels and
        on a crystal's elements past the K-th), and ``slot_class`` ``(B, K)``: the class of each
        slot (−1 where the crystal has fewer elements).
    """
    b = species.shape[0]
    flat = species.reshape(b, -1)
    n_voxels = flat.shape[1]
    position = torch.arange(n_voxels, device=species.device).expand(b, -1)
    first = torch.full((b, n_species + 2), n_voxels, dtype=torch.long, device=species.device)
    first.scatter_reduce_(1, flat + 1, position, reduce="amin")  # column 0 is "empty"
    first = first[:, 1:]  # (B, V + 1): first raster index of each class, n_voxels when absent
    order = first.argsort(dim=1, stable=True)  # classes by first occurrence
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=species.device)
                                            .expand(b, -1).contiguous())
    voxel_slot = torch.where(flat >= 0, rank.gather(1, flat.clamp(min=0)), torch.full_like(flat, EMPTY))
    voxel_slot = voxel_slot.masked_fill(voxel_slot >= slots, EMPTY).view_as(species)
    slot_class = order[:, :slots]
    absent = first.gather(1, slot_class) >= n_voxels
    if slot_class.shape[1] < slots:  # a vocabulary smaller than K
        pad = slots - slot_class.shape[1]
        slot_class, absent = F.pad(slot_class, (0, pad)), F.pad(absent, (0, pad), value=True)
    return voxel_slot, slot_class.masked_fill(absent, EMPTY)
