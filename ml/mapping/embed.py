"""Embedding many materials with a trained :class:`ml.models.cmml.CMML` in batches."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ml.data.batches import GraphStore, XRDStore


@torch.inference_mode()
def apply_to_graphs(model, fn, store: GraphStore, rows: np.ndarray | None, width: int, batch_size: int = 512,
                    device: torch.device | str = "cpu", progress: bool = False,
                    desc: str = "embedding crystals") -> np.ndarray:
    """``fn(*graph_batch.inputs())`` over ``rows`` of ``store`` (all when ``None``) in batches,
    with ``model`` in eval mode; ``(n, width)`` float32 (``(n,)`` when ``fn`` returns ``(B,)``)."""
    rows = np.arange(len(store)) if rows is None else np.asarray(rows)
    was_training = model.training
    model.eval()
    out = []
    starts = range(0, len(rows), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress):
        batch = store.batch(rows[start : start + batch_size]).to(device)
        out.append(fn(*batch.inputs()).float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, width), np.float32)


def embed_crystals(model, store: GraphStore, rows: np.ndarray | None = None, batch_size: int = 512,
                   device: torch.device | str = "cpu", progress: bool = False) -> np.ndarray:
    """Crystal-encoder embeddings of ``rows`` of ``store`` (all when ``None``), ``(n, D)`` float32."""
    return apply_to_graphs(model, model.crystal, store, rows, model.config.crystal.embedding_dim,
                           batch_size, device, progress)


@torch.inference_mode()
def embed_xrd(model, store: XRDStore, rows: np.ndarray | None = None, batch_size: int = 512,
              device: torch.device | str = "cpu", progress: bool = False) -> np.ndarray:
    """XRD-encoder embeddings of ``rows`` of ``store`` (all when ``None``), ``(n, D)`` float32."""
    rows = np.arange(len(store)) if rows is None else np.asarray(rows)
    was_training = model.training
    model.eval()
    starts = tqdm(range(0, len(rows), batch_size), desc="embedding XRD patterns", unit="batch", disable=not progress)
    out = [model.xrd(store.batch(rows[s : s + batch_size]).to(device)).float().cpu().numpy() for s in starts]
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, model.config.xrd.embedding_dim), np.float32)
