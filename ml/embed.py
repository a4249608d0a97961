"""Embedding many materials with a trained :class:`ml.cmml.CMML` in batches."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ml.batches import GraphStore, XRDStore


@torch.inference_mode()
def embed_crystals(model, store: GraphStore, rows: np.ndarray | None = None, batch_size: int = 512,
                   device: torch.device | str = "cpu", progress: bool = False) -> np.ndarray:
    """Crystal-encoder embeddings of ``rows`` of ``store`` (all when ``None``), ``(n, D)`` float32."""
    rows = np.arange(len(store)) if rows is None else np.asarray(rows)
    was_training = model.training
    model.eval()
    out = []
    starts = range(0, len(rows), batch_size)
    for start in tqdm(starts, desc="embedding crystals", unit="batch", disable=not progress):
        batch = store.batch(rows[start : start + batch_size]).to(device)
        out.append(model.crystal(*batch.inputs()).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, model.config.crystal.embedding_dim), np.float32)


@torch.inference_mode()
def embed_xrd(model, store: XRDStore, rows: np.ndarray | None = None, batch_size: int = 512,
              device: torch.device | str = "cpu") -> np.ndarray:
    """XRD-encoder embeddings of ``rows`` of ``store`` (all when ``None``), ``(n, D)`` float32."""
    rows = np.arange(len(store)) if rows is None else np.asarray(rows)
    was_training = model.training
    model.eval()
    out = [model.xrd(store.batch(rows[s : s + batch_size]).to(device)).float().cpu().numpy()
           for s in range(0, len(rows), batch_size)]
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, model.config.xrd.embedding_dim), np.float32)
