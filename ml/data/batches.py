"""Mini-batches of crystal graphs and XRD patterns from the feature cache, as torch tensors.

Departure from style.md: we gather a batch with array slicing over the concatenated shards
(:class:`GraphBatch`) instead of building one PyG ``Data`` per crystal and calling
``Batch.from_data_list``; on 2 CPU cores the per-object collation cost as much as a CGCNN
layer. The tensors are the same ones PyG's ``Batch`` would hold (``edge_index`` row 0 =
neighbour, row 1 = centre; ``batch`` vector), and the model uses PyG's ``MessagePassing``
and ``global_mean_pool`` on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ml.data.featurize import FeatureTable


@dataclass
class GraphBatch:
    """A batch of B crystal graphs.

    Attributes:
        atomic_numbers: ``(N,)`` long. edge_index: ``(2, E)`` long (row 0 neighbour j, row 1
        centre i). edge_distance: ``(E,)`` float, Å. batch: ``(N,)`` long crystal of each
        atom. n_crystals: B.
    """

    atomic_numbers: Tensor
    edge_index: Tensor
    edge_distance: Tensor
    batch: Tensor
    n_crystals: int

    def to(self, device: torch.device) -> "GraphBatch":
        return GraphBatch(
            self.atomic_numbers.to(device),
            self.edge_index.to(device),
            self.edge_distance.to(device),
            self.batch.to(device),
            self.n_crystals,
        )

    def inputs(self) -> tuple:
        """Positional arguments of :meth:`ml.models.cgcnn.CrystalEncoder.forward`."""
        return (self.atomic_numbers, self.edge_index, self.edge_distance, self.batch, self.n_crystals)


class GraphStore:
    """Random access to the crystal graphs of a graph :class:`FeatureTable`."""

    def __init__(self, table: FeatureTable) -> None:
        a = table.arrays
        self.material_ids = table.material_ids
        self.atomic_numbers = a["atomic_numbers"].astype(np.int64)
        self.edge_src = a["edge_src"].astype(np.int64)
        self.edge_dst = a["edge_dst"].astype(np.int64)
        self.edge_distance = a["edge_distance"].astype(np.float32)
        self.atom_offsets = np.concatenate([[0], np.cumsum(a["n_atoms"])])
        self.edge_offsets = np.concatenate([[0], np.cumsum(a["n_edges"])])

    @classmethod
    def from_graphs(cls, graphs: list) -> "GraphStore":
        """A store of in-memory :class:`ml.features.graph.CrystalGraph` objects (ids ``"0"``, ``"1"`` …)."""
        table = FeatureTable(
            material_ids=np.array([str(i) for i in range(len(graphs))]),
            arrays={
                "n_atoms": np.array([len(g.atomic_numbers) for g in graphs]),
                "n_edges": np.array([len(g.edge_src) for g in graphs]),
                "atomic_numbers": np.concatenate([g.atomic_numbers for g in graphs]),
                "edge_src": np.concatenate([g.edge_src for g in graphs]),
                "edge_dst": np.concatenate([g.edge_dst for g in graphs]),
                "edge_distance": np.concatenate([g.edge_distance for g in graphs]),
            },
        )
        return cls(table)

    def __len__(self) -> int:
        return len(self.material_ids)

    def batch(self, rows: np.ndarray) -> GraphBatch:
        """The graphs of ``rows`` (indices into this store) as one :class:`GraphBatch`."""
        atom_slices = [np.arange(self.atom_offsets[r], self.atom_offsets[r + 1]) for r in rows]
        edge_slices = [np.arange(self.edge_offsets[r], self.edge_offsets[r + 1]) for r in rows]
        n_atoms = np.array([len(s) for s in atom_slices])
        n_edges = np.array([len(s) for s in edge_slices])
        atoms = np.concatenate(atom_slices)
        edges = np.concatenate(edge_slices)
        shift = np.repeat(np.concatenate([[0], np.cumsum(n_atoms)[:-1]]), n_edges)
        edge_index = np.stack([self.edge_src[edges] + shift, self.edge_dst[edges] + shift])
        return GraphBatch(
            atomic_numbers=torch.from_numpy(self.atomic_numbers[atoms]),
            edge_index=torch.from_numpy(edge_index),
            edge_distance=torch.from_numpy(self.edge_distance[edges]),
            batch=torch.from_numpy(np.repeat(np.arange(len(rows)), n_atoms)),
            n_crystals=len(rows),
        )


class XRDStore:
    """Random access to the sparse XRD patterns of an xrd :class:`FeatureTable`."""

    def __init__(self, table: FeatureTable, n_bins: int = 5000) -> None:
        self.material_ids = table.material_ids
        self.indptr = table.arrays["indptr"]
        self.bins = table.arrays["bins"].astype(np.int64)
        self.values = table.arrays["values"].astype(np.float32)
        self.n_bins = n_bins

    def __len__(self) -> int:
        return len(self.material_ids)

    def batch(self, rows: np.ndarray) -> Tensor:
        """Dense patterns of ``rows``, ``(B, n_bins)`` float32."""
        out = np.zeros((len(rows), self.n_bins), dtype=np.float32)
        for i, r in enumerate(rows):
            lo, hi = self.indptr[r], self.indptr[r + 1]
            out[i, self.bins[lo:hi]] = self.values[lo:hi]
        return torch.from_numpy(out)


def align(graph_ids: np.ndarray, xrd_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of materials present in both stores: ``(ids, graph_rows, xrd_rows)``."""
    ids, graph_rows, xrd_rows = np.intersect1d(graph_ids, xrd_ids, assume_unique=True, return_indices=True)
    return ids, graph_rows, xrd_rows
