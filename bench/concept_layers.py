"""Which layer of a map model carries the superconductor concept? One run, paired draws.

Issue 14's concept gate compares, at 10 labels, the ROC-AUC of a random forest on our map
embedding with the CGCNN formation-energy latent (:mod:`ml.evaluation.concepts`). This script puts
other layers of the same crystal encoder beside them, on the same pool, group splits and
training draws as ``python -m ml evaluate``:

- ``embedding``: the map's embedding (the projection head's output), what the gate measures;
- ``embedding-l2``: the same, L2-normalised;
- ``head-hidden``: the projection head's first hidden layer (after BatchNorm and ReLU);
- ``pooled``: the mean-pooled atom features after the convolutions, before the head (in
  contrastive learning the layer before the projection often transfers better);
- ``cgcnn-latent``: the reference.

Needs the built map of ``--model`` and the cached crystal graphs. Prints the mean and standard
deviation of the ROC-AUC per layer and training size, and as its last line::

    concept layers model=<model> best=<layer> best_auc10=<…> cgcnn_auc10=<…> ratio=<best / cgcnn>

Usage: PYTHONPATH=. .venv/bin/python bench/concept_layers.py [--model cmml-full] [--repeats 20]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ml.mapping.artifacts import MapArtifacts
from ml.data.batches import GraphStore
from ml.models.cmml import load_model
from ml.data.datasets import get_dataset
from ml.mapping.embed import apply_to_graphs
from ml.evaluation.concepts import concept_pool, few_label_auc, summarise
from ml.evaluation.descriptors import aligned, cgcnn_latent, ours
from ml.data.featurize import load_features
from ml.models.registry import resolve_model
from ml.settings import DEFAULT_MODEL


def layers(model_name: str, dataset, material_ids: np.ndarray) -> dict[str, np.ndarray]:
    """``{layer: (n, d) float32}`` of the crystal encoder for ``material_ids`` (cached graphs)."""
    graphs = load_features(dataset, "graph")
    row_of = {m: i for i, m in enumerate(np.asarray(graphs.material_ids).astype(str))}
    rows = np.array([row_of[m] for m in material_ids])
    net, _ = load_model(resolve_model(model_name)[1])
    encoder, store = net.crystal, GraphStore(graphs)
    pooled = apply_to_graphs(net, encoder.pooled, store, rows, encoder.config.hidden)
    hidden = apply_to_graphs(net, lambda *a: encoder.head.layers[:3](encoder.pooled(*a)), store, rows,
                             encoder.config.head_hidden)
    return {"pooled": pooled, "head-hidden": hidden}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--dataset", default="mp2024")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 50, 100])
    args = parser.parse_args()
    torch.set_num_threads(2)
    dataset = get_dataset(args.dataset)
    artifacts = MapArtifacts.load(args.dataset, args.model)
    pool = concept_pool(artifacts.materials, 0)
    features, mask = aligned({"embedding": ours(artifacts), "cgcnn-latent": cgcnn_latent(dataset, progress=False)},
                             pool["material_id"])
    pool = pool[mask].reset_index(drop=True)
    features |= layers(args.model, dataset, pool["material_id"].to_numpy())
    features["embedding-l2"] = features["embedding"] / np.linalg.norm(features["embedding"], axis=1, keepdims=True)
    print(f"{len(pool)} materials, {int(pool['label'].sum())} superconductors; layers "
          + ", ".join(f"{k} {v.shape[1]}-d" for k, v in features.items()))
    table = summarise(few_label_auc(features, pool["label"].to_numpy(), pool["group"].to_numpy(),
                                    args.sizes, args.repeats, 0))
    print("mean ROC-AUC\n", table.pivot(index="descriptor", columns="size", values="mean").round(3))
    print("std\n", table.pivot(index="descriptor", columns="size", values="std").round(3))
    at10 = table[table["size"] == min(args.sizes)].set_index("descriptor")["mean"]
    ours_layers = at10.drop("cgcnn-latent")
    best = ours_layers.idxmax()
    print(f"concept layers model={args.model} best={best} best_auc{min(args.sizes)}={ours_layers[best]:.3f} "
          f"cgcnn_auc{min(args.sizes)}={at10['cgcnn-latent']:.3f} ratio={ours_layers[best] / at10['cgcnn-latent']:.3f}")


if __name__ == "__main__":
    main()
