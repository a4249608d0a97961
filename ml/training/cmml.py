"""Training of the CMML encoders (Suzuki et al. 2022) on CPU, one GPU, or many via torchrun.

Named configurations (:data:`TRAIN_CONFIGS`):

- ``paper``: the published recipe — 1024-d embeddings, head width 1024, batch 512, Adam with
  a constant learning rate of 1e-3, 1000 epochs, all training materials. For GPUs.
- ``full``: the campaign on 2 CPU cores (issue 14): every training material of ``mp2024``
  (~127k), 256-d embeddings with a head of width 512 (chosen by ``bench/train_step.py``:
  see the README), batch 256, Adam with one epoch of linear warm-up and a cosine decay to 5 % of
  1e-3 over 12 epochs, a checkpoint every 10 minutes inside an epoch, and ``--max-minutes`` to
  stop a session's share at a checkpoint. It takes longer than one session: the checkpoint and
  the campaign log are kept beside the model (:mod:`ml.training.campaign`) and committed, and ``--resume``
  continues from them on a clean clone with the same weights an uninterrupted run would have.
- ``cpu``: what trains a useful model in under an hour on 2 CPU cores. Reduced: embedding
  1024 → 128 and head width 1024 → 256 (the head's matrices dominate the parameter count and
  a 128-d space already separates the ~7k materials of a test split), batch 512 → 256 (twice
  the optimiser steps per epoch at the same cost per material), epochs 1000 → 10, and
  the training set to the first ``train_shards`` = 20 feature shards (each a random ~1/71 of
  ``mp2024``, so about 36k training materials), because each epoch costs time in proportion
  to the materials used. Kept: the CGCNN depth (3 convolutions), the XRD CNN, the loss,
  margin, Adam and its learning rate.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) each process takes every
``WORLD_SIZE``-th batch of a shared permutation, gradients are averaged by
``DistributedDataParallel`` (backend ``nccl`` on CUDA, ``gloo`` on CPU), and rank 0 validates
and writes checkpoints. The triplet negatives come from each process's own batch.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ml.features.atom_features import atom_feature_table
from ml.data.batches import GraphStore, XRDStore, align
from ml.training.campaign import Campaign
from ml.models.cmml import CMML, CMMLConfig, save_model
from ml.data.datasets import Dataset
from ml.mapping.embed import embed_crystals, embed_xrd
from ml.data.featurize import featurize, load_features
from ml.data.shard_cache import n_shards_for
from ml.training.loss import bidirectional_triplet_loss
from ml.training.model_card import write_model_card
from ml.models.cgcnn import CGCNNConfig
from ml.models.xrd_cnn import XRDCNNConfig
from ml.evaluation.retrieval import retrieval_topk
from ml.data.splits import assign_splits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """One training recipe; saved inside every checkpoint.

    Attributes:
        name: config name (``cpu``, ``paper``).
        model: encoder sizes.
        batch_size: materials per optimiser step (per process under torchrun).
        lr: Adam learning rate (the peak, with a schedule).
        warmup_epochs: linear warm-up from ``lr / 10`` over this many epochs (0: none).
        final_lr_ratio: after the warm-up the rate decays by a cosine to ``lr · final_lr_ratio``
            at the end of the last epoch (1: constant).
        epochs: passes over the training materials.
        checkpoint_minutes: also checkpoint inside an epoch every this many minutes (``None``:
            at the end of each epoch only).
        max_minutes: stop at the first checkpoint after this wall time of the session (``None``:
            run every epoch); ``--resume`` continues.
        margin: triplet margin m.
        train_shards: use the first this many feature shards (``None``: all).
        max_val: cap on validation materials scored each epoch (``None``: all).
        seed: seed of the permutation and the negatives.
    """

    name: str
    model: CMMLConfig = field(default_factory=CMMLConfig)
    batch_size: int = 256
    lr: float = 1e-3
    warmup_epochs: float = 0.0
    final_lr_ratio: float = 1.0
    epochs: int = 40
    margin: float = 1.0
    train_shards: int | None = None
    max_val: int | None = None
    seed: int = 0
    checkpoint_minutes: float | None = None
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 2 or self.lr <= 0 or self.epochs < 1 or self.margin <= 0:
            raise ValueError(f"invalid TrainConfig {self}")
        if self.warmup_epochs < 0 or not 0 < self.final_lr_ratio <= 1:
            raise ValueError(f"invalid learning-rate schedule in {self}")

    def learning_rate(self, epoch: int, batch: int, n_batches: int) -> float:
        """The rate of step ``batch`` (of ``n_batches``) of epoch ``epoch`` (both from 0)."""
        t = epoch + batch / max(n_batches, 1)  # epochs done, fractional
        if t < self.warmup_epochs:
            return self.lr * (0.1 + 0.9 * t / self.warmup_epochs)
        if self.final_lr_ratio == 1:
            return self.lr
        progress = min((t - self.warmup_epochs) / max(self.epochs - self.warmup_epochs, 1e-9), 1.0)
        low = self.lr * self.final_lr_ratio
        return low + 0.5 * (self.lr - low) * (1 + math.cos(math.pi * progress))

    def same_recipe(self, other: "TrainConfig") -> bool:
        """Equal but for what may change between the sessions of a campaign (the session's time
        limits and, with a warning, the number of epochs)."""
        loose = {"epochs": 1, "checkpoint_minutes": None, "max_minutes": None}
        return replace(self, **loose) == replace(other, **loose)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        data = dict(data)
        data["model"] = CMMLConfig.from_dict(data["model"])
        return cls(**data)


def _sized(embedding: int, head: int) -> CMMLConfig:
    return CMMLConfig(
        crystal=CGCNNConfig(embedding_dim=embedding, head_hidden=head),
        xrd=XRDCNNConfig(embedding_dim=embedding, head_hidden=head),
    )


TRAIN_CONFIGS: dict[str, TrainConfig] = {
    "paper": TrainConfig(name="paper", model=_sized(1024, 1024), batch_size=512, lr=1e-3, epochs=1000),
    "cpu": TrainConfig(name="cpu", model=_sized(128, 256), batch_size=256, lr=1e-3, epochs=10, train_shards=20),
    "full": TrainConfig(name="full", model=_sized(256, 512), batch_size=256, lr=1e-3, warmup_epochs=1.0,
                        final_lr_ratio=0.05, epochs=12, checkpoint_minutes=10.0),
}


def pick_device() -> torch.device:
    """CUDA when present (the local rank's GPU under torchrun), else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


@dataclass
class TrainingData:
    """Aligned graph and XRD stores with the rows of each split."""

    graphs: GraphStore
    patterns: XRDStore
    material_ids: np.ndarray
    graph_rows: np.ndarray
    xrd_rows: np.ndarray
    split: np.ndarray

    def rows(self, split: str) -> np.ndarray:
        """Positions (into the aligned arrays) of one split."""
        return np.flatnonzero(self.split == split)


def load_training_data(dataset: Dataset, train_shards: int | None, processes: int | None = None) -> TrainingData:
    """Featurise what is missing and load graphs and XRD patterns.

    With ``train_shards`` set, XRD patterns are computed and loaded for the first
    ``train_shards`` feature shards only (a random share of the dataset): training and
    per-epoch validation use the materials there. The final test (:func:`train`) loads the
    whole test split on its own (``dataset.subset("test", …)``).
    """
    n_shards = n_shards_for(len(dataset))
    shards = None if train_shards is None or train_shards >= n_shards else range(train_shards)
    featurize(dataset, "graph", processes=processes)
    featurize(dataset, "xrd", shards=shards, processes=processes)
    graphs = GraphStore(load_features(dataset, "graph"))
    patterns = XRDStore(load_features(dataset, "xrd", shards=shards))
    ids, g_rows, x_rows = align(graphs.material_ids, patterns.material_ids)
    return TrainingData(graphs, patterns, ids, g_rows, x_rows, assign_splits(ids))


@torch.no_grad()
def recalibrate_batch_norm(model: CMML, data: TrainingData, rows: np.ndarray, batch_size: int,
                           n_batches: int = 40, seed: int = 0, device=None) -> None:
    """Replace every BatchNorm's running mean / variance by their exact average over
    ``n_batches`` training batches ("precise BN"), with the weights fixed.

    The running averages that BatchNorm keeps during training (momentum 0.1) trail the
    weights and swing with the composition of the last batches; the crystal encoder's edge
    BatchNorm sees a very different mix of bonds in every batch. Evaluated with those averages,
    validation retrieval jumped between 25 % and 82 % top-10 from one epoch to the next while
    the training loss fell smoothly; with recomputed statistics it follows the loss.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    order = np.random.default_rng(seed).permutation(rows)
    for start in range(0, min(len(order), n_batches * batch_size), batch_size):
        chunk = order[start : start + batch_size]
        if len(chunk) < 2:
            break
        graphs = data.graphs.batch(data.graph_rows[chunk]).to(device)
        model(*graphs.inputs(), data.patterns.batch(data.xrd_rows[chunk]).to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)


def evaluate_retrieval(model: CMML, data: TrainingData, split: str, device, max_n: int | None = None,
                       ks=(1, 5, 10)) -> dict[int, float]:
    """Top-k retrieval (XRD query → crystal among all materials of ``split``)."""
    rows = data.rows(split)
    if max_n is not None and len(rows) > max_n:
        rows = np.random.default_rng(0).choice(rows, max_n, replace=False)
    crystal = embed_crystals(model, data.graphs, data.graph_rows[rows], device=device)
    xrd = embed_xrd(model, data.patterns, data.xrd_rows[rows], device=device)
    return retrieval_topk(xrd, crystal, ks)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def train(
    dataset: Dataset,
    config: TrainConfig,
    run_dir: Path,
    resume: bool = False,
    out_model: Path | None = None,
    processes: int | None = None,
) -> dict:
    """Train (or resume) a CMML model; checkpoint into ``run_dir``.

    Writes ``run_dir/last.pt`` (model, optimiser, position in the epoch, the negatives' random
    state, history) at the end of every epoch and, with ``config.checkpoint_minutes``, inside
    epochs; ``run_dir/log.csv`` (per epoch: loss, learning rate, validation top-1/5/10, seconds,
    samples/s, cumulative hours); a copy of both beside ``out_model`` (:mod:`ml.training.campaign`); and,
    when every epoch has run, the model file ``out_model`` (default ``run_dir/model.pt``) with its
    card. A resumed run gives the same weights as an uninterrupted one (same permutation, same
    negatives, same schedule).

    Returns:
        ``{"history": [...], "finished": bool}`` and, when finished, ``"test"`` retrieval.

    Raises:
        FileNotFoundError: ``resume`` without a checkpoint in ``run_dir`` or beside ``out_model``.
        ValueError: ``resume`` from a checkpoint of another recipe.
    """
    rank, world = _distributed()
    device = pick_device()
    torch.manual_seed(config.seed)
    data = load_training_data(dataset, config.train_shards, processes=processes) if rank == 0 or world == 1 else None
    if world > 1:  # rank 0 featurises first; the others then read the finished cache
        dist.barrier()
        if data is None:
            data = load_training_data(dataset, config.train_shards, processes=1)
    model = CMML(config.model, torch.from_numpy(atom_feature_table())).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    model_path = out_model or run_dir / "model.pt"
    campaign = Campaign(run_dir, model_path.parent if out_model is not None else None)
    history: list[dict] = []
    start_epoch, start_batch, partial, resumed_generator = 0, 0, {}, None
    if resume:
        state = campaign.load(device)
        saved = TrainConfig.from_dict(state["config"]) if "config" in state else None
        if saved is None or not saved.same_recipe(config):
            raise ValueError(f"--resume: {campaign.source()} was made with another recipe ({saved})")
        if saved.epochs != config.epochs:
            log.warning("resuming with %d epochs instead of %d: the learning-rate schedule changes", config.epochs,
                        saved.epochs)
        model.load_state_dict(state["state_dict"], strict=True)
        optimiser.load_state_dict(state["optimiser"])
        history, start_epoch = list(state["history"]), int(state["epoch"])
        start_batch, partial = int(state.get("batch", 0)), dict(state.get("partial", {}))
        resumed_generator = state.get("generator")
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    train_rows = data.rows("train")
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        log.info("training on %d materials, validating on %d", len(train_rows), len(data.rows("val")))
    session_began = last_checkpoint = time.time()
    stopped = False

    def checkpoint(epoch: int, batch: int, generator: torch.Generator, partial: dict) -> None:
        campaign.save({"state_dict": model.state_dict(), "optimiser": optimiser.state_dict(), "epoch": epoch,
                       "batch": batch, "generator": generator.get_state(), "partial": partial,
                       "history": history, "config": asdict(config)}, history)
        campaign.keep()

    for epoch in range(start_epoch, config.epochs):
        wrapped.train()
        permutation = np.random.default_rng(config.seed + epoch).permutation(train_rows)
        # negatives from a stream fixed by (seed, epoch, rank), so a resumed run repeats an uninterrupted one
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([config.seed, epoch, rank]).generate_state(1)[0]))
        batches = [permutation[s : s + config.batch_size] for s in range(0, len(permutation), config.batch_size)]
        batches = [b for b in batches if len(b) >= 2]
        # every process must run the same number of steps, or DDP's gradient all-reduce deadlocks
        batches = batches[: len(batches) // world * world][rank::world]
        first = 0
        if epoch == start_epoch and start_batch:  # resuming inside this epoch
            first = start_batch
            generator.set_state(resumed_generator.cpu())
        else:
            partial = {}
        total, seconds = partial.get("loss_sum", 0.0), partial.get("seconds", 0.0)
        began = time.time()
        for index in tqdm(range(first, len(batches)), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                          disable=rank != 0, leave=False, initial=first, total=len(batches)):
            for group in optimiser.param_groups:
                group["lr"] = config.learning_rate(epoch, index, len(batches))
            rows = batches[index]
            graphs = data.graphs.batch(data.graph_rows[rows]).to(device)
            patterns = data.patterns.batch(data.xrd_rows[rows]).to(device)
            crystal, xrd = wrapped(*graphs.inputs(), patterns)
            loss = bidirectional_triplet_loss(crystal, xrd, config.margin, generator)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
            done = index + 1
            if config.checkpoint_minutes is not None and done < len(batches) and _agree(
                    time.time() - last_checkpoint >= 60 * config.checkpoint_minutes, world, device):
                if rank == 0:
                    checkpoint(epoch, done, generator,
                               {"loss_sum": total, "seconds": seconds + time.time() - began})
                last_checkpoint = time.time()
                if config.max_minutes is not None and _agree(
                        time.time() - session_began >= 60 * config.max_minutes, world, device):
                    stopped = True
                    break
        if stopped:
            break
        if rank == 0:
            seconds += time.time() - began
            recalibrate_batch_norm(model, data, train_rows, config.batch_size, seed=epoch, device=device)
            val = evaluate_retrieval(model, data, "val", device, config.max_val)
            hours = (history[-1]["hours"] if history and "hours" in history[-1] else 0.0) + seconds / 3600
            row = {"epoch": epoch + 1, "loss": total / max(len(batches), 1),
                   "lr": config.learning_rate(epoch, len(batches), len(batches)),
                   "val_top1": val[1], "val_top5": val[5], "val_top10": val[10], "seconds": seconds,
                   "samples_per_s": len(batches) * config.batch_size * world / max(seconds, 1e-9), "hours": hours}
            history.append(row)
            log.info("epoch %(epoch)d loss %(loss).4f val top-1 %(val_top1).3f top-10 %(val_top10).3f "
                     "(%(seconds).0f s, %(samples_per_s).0f materials/s)", row)
            checkpoint(epoch + 1, 0, generator, {})
            last_checkpoint = time.time()
        if config.max_minutes is not None and epoch + 1 < config.epochs and _agree(
                time.time() - session_began >= 60 * config.max_minutes, world, device):
            stopped = True
            break
    result: dict = {"history": history, "finished": not stopped}
    if rank == 0 and stopped:
        log.info("stopped after %.0f min at a checkpoint (max_minutes %s): --resume continues",
                 (time.time() - session_began) / 60, config.max_minutes)
    if rank == 0 and not stopped:
        if start_epoch >= config.epochs:  # each epoch recalibrates; a resume that runs none may hold older statistics
            recalibrate_batch_norm(model, data, train_rows, config.batch_size, seed=config.epochs, device=device)
        if config.train_shards is None:
            full = data
        else:  # XRD of the whole test split only, not of every material outside the training shards
            full = load_training_data(dataset.split_subset("test"), None, processes)
        test = evaluate_retrieval(model, full, "test", device, ks=tuple(range(1, 11)))
        result["test"] = test
        result["n_train"] = int(len(train_rows))
        result["n_test"] = int(len(full.rows("test")))
        extra = {"train_config": asdict(config), "history": history, "test_retrieval": test,
                 "dataset": dataset.name, "n_train": result["n_train"], "n_test": result["n_test"]}
        save_model(model_path, model, extra)
        write_model_card(model_path, extra)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


def _agree(flag: bool, world: int, device) -> bool:
    """Rank 0's decision, the same on every process (a clock differs between processes)."""
    if world == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())
