"""Training of the CMML encoders (Suzuki et al. 2022) on CPU, one GPU, or many via torchrun.

Recipes: :mod:`ml.training.cmml_recipes` (``paper``, ``full``, ``cpu``). The loop, checkpoints and
resuming: :mod:`ml.training.loop`.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) each process takes every
``WORLD_SIZE``-th batch of a shared permutation, gradients are averaged by
``DistributedDataParallel`` (backend ``nccl`` on CUDA, ``gloo`` on CPU), and rank 0 validates
and writes checkpoints. The triplet negatives come from each process's own batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ml.features.atom_features import atom_feature_table
from ml.data.batches import GraphStore, XRDStore, align
from ml.training.campaign import Campaign
from ml.training.loop import EpochLoop, agree, init_distributed, pick_device, resume
from ml.models.cmml import CMML, save_model
from ml.training.cmml_recipes import TrainConfig
from ml.data.datasets import Dataset
from ml.mapping.embed import embed_crystals, embed_xrd
from ml.data.featurize import featurize, load_features
from ml.data.shard_cache import n_shards_for
from ml.training.loss import bidirectional_triplet_loss
from ml.training.model_card import write_model_card
from ml.evaluation.retrieval import retrieval_topk
from ml.data.splits import assign_splits

log = logging.getLogger(__name__)


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


def _load_on_every_rank(dataset: Dataset, config: TrainConfig, rank: int, world: int,
                        processes: int | None) -> TrainingData:
    """Rank 0 featurises what is missing first; the other ranks then read the finished cache."""
    data = load_training_data(dataset, config.train_shards, processes=processes) if rank == 0 or world == 1 else None
    if world > 1:
        dist.barrier()
        if data is None:
            data = load_training_data(dataset, config.train_shards, processes=1)
    return data


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
    negatives, same schedule). Under ``torchrun`` every process calls it (see the module docstring).

    Returns:
        ``{"history": [...], "finished": bool}`` and, when finished, ``"test"`` retrieval
        (``{k: fraction}``, k = 1 … 10), ``"n_train"`` and ``"n_test"``.

    Raises:
        FileNotFoundError: ``resume`` without a checkpoint in ``run_dir`` or beside ``out_model``.
        ValueError: ``resume`` from a checkpoint of another recipe.
    """
    rank, world = init_distributed()
    device = pick_device()
    torch.manual_seed(config.seed)
    data = _load_on_every_rank(dataset, config, rank, world, processes)
    model = CMML(config.model, torch.from_numpy(atom_feature_table())).to(device)
    model_path = out_model or run_dir / "model.pt"
    campaign = Campaign(run_dir, model_path.parent if out_model is not None else None)
    session = _Session(config, data, model, torch.optim.Adam(model.parameters(), lr=config.lr), rank, world, device)
    start, history = session.resume(campaign) if resume else (0, [])
    session.wrap()
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        log.info("training on %d materials, validating on %d", len(session.train_rows), len(data.rows("val")))
    session.loop = EpochLoop(campaign, config.epochs, config.max_minutes, keep_every_checkpoint=True, main=rank == 0,
                             world=world, device=device, history=history)
    finished = session.loop.run(start, session.fit_epoch, session.checkpoint_state)
    result: dict = {"history": session.loop.history, "finished": finished}
    if rank == 0 and finished:
        result |= _finish(dataset, session, start, model_path, processes)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


@dataclass
class _Session:
    """One process's share of a CMML training session: its steps, checkpoints and validation."""

    config: TrainConfig
    data: TrainingData
    model: CMML
    optimiser: torch.optim.Optimizer
    rank: int
    world: int
    device: torch.device
    loop: EpochLoop | None = None
    start_epoch: int = 0
    start_batch: int = 0
    partial: dict = field(default_factory=dict)
    resumed_generator: torch.Tensor | None = None
    generator: torch.Generator | None = None
    last_checkpoint: float = field(default_factory=lambda: time.time())

    def __post_init__(self) -> None:
        self.train_rows = self.data.rows("train")
        self.wrapped = self.model

    def wrap(self) -> None:
        """Average gradients over the torchrun processes (``DistributedDataParallel``)."""
        self.wrapped = torch.nn.parallel.DistributedDataParallel(self.model) if self.world > 1 else self.model

    def resume(self, campaign: Campaign) -> tuple[int, list[dict]]:
        """Load the campaign's checkpoint; returns ``(epochs done, history)`` (raises as :func:`train`)."""
        config = self.config

        def check(state: dict) -> None:
            saved = TrainConfig.from_dict(state["config"]) if "config" in state else None
            if saved is None or not saved.same_recipe(config):
                raise ValueError(f"--resume: {campaign.source()} was made with another recipe ({saved})")
            if saved.epochs != config.epochs:
                log.warning("resuming with %d epochs instead of %d: the learning-rate schedule changes",
                            config.epochs, saved.epochs)

        start, history, state = resume(campaign, self.device, check,
                                       {"state_dict": self.model, "optimiser": self.optimiser})
        self.start_epoch, self.start_batch = start, int(state.get("batch", 0))
        self.partial, self.resumed_generator = dict(state.get("partial", {})), state.get("generator")
        return start, history

    def checkpoint_state(self, batch: int = 0, partial: dict | None = None) -> dict:
        """What a checkpoint holds besides ``epoch`` and ``history`` (at ``batch`` of the epoch)."""
        return {"state_dict": self.model.state_dict(), "optimiser": self.optimiser.state_dict(), "batch": batch,
                "generator": self.generator.get_state(), "partial": partial or {}, "config": asdict(self.config)}

    def _epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """This process's batches of ``epoch``; sets the negatives' random stream."""
        config, world = self.config, self.world
        permutation = np.random.default_rng(config.seed + epoch).permutation(self.train_rows)
        # negatives from a stream fixed by (seed, epoch, rank), so a resumed run repeats an uninterrupted one
        seed = int(np.random.SeedSequence([config.seed, epoch, self.rank]).generate_state(1)[0])
        self.generator = torch.Generator().manual_seed(seed)
        batches = [permutation[s : s + config.batch_size] for s in range(0, len(permutation), config.batch_size)]
        batches = [b for b in batches if len(b) >= 2]
        # every process must run the same number of steps, or DDP's gradient all-reduce deadlocks
        return batches[: len(batches) // world * world][self.rank :: world]

    def fit_epoch(self, epoch: int) -> dict | None:
        """Train one epoch (from a resumed position inside it if there is one) and validate;
        the log row on rank 0, ``{}`` elsewhere, ``None`` when stopped at an in-epoch checkpoint."""
        self.wrapped.train()
        batches = self._epoch_batches(epoch)
        first = 0
        if epoch == self.start_epoch and self.start_batch:  # resuming inside this epoch
            first = self.start_batch
            self.generator.set_state(self.resumed_generator.cpu())
        else:
            self.partial = {}
        seconds = self.partial.get("seconds", 0.0)
        began = time.time()
        total = self._steps(epoch, batches, first, self.partial.get("loss_sum", 0.0), seconds, began)
        if total is None:
            return None
        if self.rank != 0:
            return {}
        return self._validate(epoch, total, seconds + time.time() - began, len(batches))

    def _steps(self, epoch: int, batches: list[np.ndarray], first: int, total: float, seconds: float,
               began: float) -> float | None:
        """Optimiser steps ``first …`` of the epoch: the loss sum, or ``None`` when the session stopped."""
        config, data, device = self.config, self.data, self.device
        for index in tqdm(range(first, len(batches)), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                          disable=self.rank != 0, leave=False, initial=first, total=len(batches)):
            for group in self.optimiser.param_groups:
                group["lr"] = config.learning_rate(epoch, index, len(batches))
            rows = batches[index]
            graphs = data.graphs.batch(data.graph_rows[rows]).to(device)
            patterns = data.patterns.batch(data.xrd_rows[rows]).to(device)
            crystal, xrd = self.wrapped(*graphs.inputs(), patterns)
            loss = bidirectional_triplet_loss(crystal, xrd, config.margin, self.generator)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            total += float(loss.detach())
            done = index + 1
            if config.checkpoint_minutes is not None and done < len(batches) and agree(
                    time.time() - self.last_checkpoint >= 60 * config.checkpoint_minutes, self.world, device):
                partial = {"loss_sum": total, "seconds": seconds + time.time() - began}
                self.loop.save({**self.checkpoint_state(done, partial), "epoch": epoch})
                self.last_checkpoint = time.time()
                if self.loop.out_of_time():
                    return None
        return total

    def _validate(self, epoch: int, total: float, seconds: float, n_batches: int) -> dict:
        """Precise BatchNorm statistics, validation retrieval and the epoch's log row (rank 0)."""
        config, history = self.config, self.loop.history
        recalibrate_batch_norm(self.model, self.data, self.train_rows, config.batch_size, seed=epoch,
                               device=self.device)
        val = evaluate_retrieval(self.model, self.data, "val", self.device, config.max_val)
        hours = (history[-1]["hours"] if history and "hours" in history[-1] else 0.0) + seconds / 3600
        row = {"epoch": epoch + 1, "loss": total / max(n_batches, 1),
               "lr": config.learning_rate(epoch, n_batches, n_batches),
               "val_top1": val[1], "val_top5": val[5], "val_top10": val[10], "seconds": seconds,
               "samples_per_s": n_batches * config.batch_size * self.world / max(seconds, 1e-9), "hours": hours}
        log.info("epoch %(epoch)d loss %(loss).4f val top-1 %(val_top1).3f top-10 %(val_top10).3f "
                 "(%(seconds).0f s, %(samples_per_s).0f materials/s)", row)
        self.last_checkpoint = time.time()
        return row


def _finish(dataset: Dataset, session: _Session, start_epoch: int, model_path: Path, processes: int | None) -> dict:
    """Test retrieval on the whole test split, the model file and its card (rank 0, all epochs run)."""
    config, model, device = session.config, session.model, session.device
    if start_epoch >= config.epochs:  # each epoch recalibrates; a resume that runs none may hold older statistics
        recalibrate_batch_norm(model, session.data, session.train_rows, config.batch_size, seed=config.epochs,
                               device=device)
    if config.train_shards is None:
        full = session.data
    else:  # XRD of the whole test split only, not of every material outside the training shards
        full = load_training_data(dataset.split_subset("test"), None, processes)
    test = evaluate_retrieval(model, full, "test", device, ks=tuple(range(1, 11)))
    result = {"test": test, "n_train": int(len(session.train_rows)), "n_test": int(len(full.rows("test")))}
    extra = {"train_config": asdict(config), "history": session.loop.history, "test_retrieval": test,
             "dataset": dataset.name, "n_train": result["n_train"], "n_test": result["n_test"]}
    save_model(model_path, model, extra)
    write_model_card(model_path, extra)
    return result
