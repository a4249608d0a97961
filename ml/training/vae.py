"""Training of the crystal generator (:class:`ml.models.vae3d.CondVAE3D`, after Court et al.,
J. Chem. Inf. Model. 60, 4518, 2020) on the VAE selection's voxel store.

Named configurations (:data:`VAE_TRAIN_CONFIGS`):

- ``cpu`` (the committed ``vae-cpu``): 16³ grid, encoder widths (16, 32, 64, 128), 256-d latent,
  Adam 1e-3 with a cosine decay, batch 32, every training crystal, random 90° rotations; sized
  to train in under 3 hours on 2 CPU cores (``max_minutes``), checkpointed every epoch and
  resumable.
- ``paper``: the published grid (32³), latent (256), batch (20) and lr (1e-4) with wider
  encoder blocks (32–256, not given in the paper), 100 epochs: for a GPU.

The run folder holds ``last.pt`` (model, optimiser, epoch, history, configuration) and
``log.csv`` after every epoch; ``resume=True`` continues from them and gives the same weights as
an uninterrupted run (the order, rotations and ε of an epoch are drawn from ``(seed, epoch)``).
At the end of a run (all epochs, or ``max_minutes``) both are copied beside the model as
``train_state.pt`` and ``train_log.csv``: committed with it, they let a later session on a clean
clone continue the campaign (``--resume`` falls back to them when the run folder is empty).
The final weights go to ``<out_dir>/vae.pt`` with the element vocabulary, the voxel, data and
training configurations, the command and the history; :func:`ml.training.model_card.write_vae_model_card` writes
``MODEL_CARD.md`` beside them.
"""

from __future__ import annotations

import logging
import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ml.training.campaign import Campaign
from ml.training.loop import EpochLoop
from ml.training.loop import resume as resume_run
from ml.training.model_card import VAE_FILE, write_vae_model_card
from ml.data.datasets import Dataset
from ml.models.vae3d import CondVAE3D, VAE3DConfig, one_hot_decile, save_voxel_model
from ml.models.vae3d_loss import vae_loss
from ml.models.vae3d_slots import EMPTY
from ml.generation.voxel_arrays import VoxelArrays, load_voxel_arrays
from ml.generation.rotations import random_rotation, rotate90
from ml.generation.voxels import MAX_ATOMIC_NUMBER, VoxelConfig

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class VAETrainConfig:
    """One training recipe; saved inside every checkpoint.

    Attributes:
        name: ``cpu`` or ``paper`` (or a test's name).
        vae: model sizes and loss weights (``n_species`` is set from the training vocabulary).
        lr: Adam learning rate at the start; it decays by a cosine to ``lr · final_lr_ratio``.
        batch_size: crystals per step.
        epochs: passes over the training crystals.
        max_minutes: stop after the epoch that passes this wall time (``None``: no limit); the
            run can be resumed later with more time.
        max_train: use this many training crystals, drawn at random with ``seed`` (``None``: all).
        max_val: validation crystals scored after each epoch (``None``: all).
        augment: a random one of the 24 proper 90° cube rotations per crystal and step.
        seed: seed of the subset, the order, the rotations and ε.
    """

    name: str
    vae: VAE3DConfig = field(default_factory=lambda: VAE3DConfig(n_species=1))
    lr: float = 1e-3
    final_lr_ratio: float = 0.05
    batch_size: int = 32
    epochs: int = 40
    max_minutes: float | None = None
    max_train: int | None = None
    max_val: int | None = 300
    augment: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 2 or self.epochs < 1 or self.lr <= 0 or not 0 < self.final_lr_ratio <= 1:
            raise ValueError(f"invalid VAETrainConfig {self}")
        if (self.max_train is not None and self.max_train < 2) or (self.max_val is not None and self.max_val < 1):
            raise ValueError("max_train must be ≥ 2 and max_val ≥ 1")

    @classmethod
    def from_dict(cls, data: dict) -> VAETrainConfig:
        data = dict(data)
        data["vae"] = VAE3DConfig.from_dict(data["vae"])
        return cls(**data)

    @property
    def voxel_config(self) -> VoxelConfig:
        """The voxel grids this recipe trains on (grid size of the model)."""
        return VoxelConfig(grid_size=self.vae.grid)


VAE_TRAIN_CONFIGS: dict[str, VAETrainConfig] = {
    "cpu": VAETrainConfig(name="cpu", vae=VAE3DConfig(n_species=1, grid=16, channels=(16, 32, 64, 128)),
                          lr=2e-3, batch_size=32, epochs=16, max_minutes=170),
    "paper": VAETrainConfig(name="paper", vae=VAE3DConfig(n_species=1, grid=32, channels=(32, 64, 128, 256)),
                            lr=1e-4, batch_size=20, epochs=100),
}


# --------------------------------------------------------------------------- vocabulary and batches


def species_vocabulary(arrays: VoxelArrays, rows: np.ndarray) -> list[int]:
    """Atomic numbers present in the species grids of ``rows``, ascending (the model's classes)."""
    present = np.zeros(MAX_ATOMIC_NUMBER + 1, dtype=bool)
    for start in range(0, len(rows), 512):
        present[np.unique(np.asarray(arrays.species[np.sort(rows[start : start + 512])]))] = True
    present[0] = False
    return [int(z) for z in np.flatnonzero(present)]


def class_lookup(vocabulary: list[int]) -> np.ndarray:
    """``(119,)`` int64 map from atomic number to class index: −1 for 0 (empty), ``V`` for an
    element outside the vocabulary."""
    lookup = np.full(MAX_ATOMIC_NUMBER + 1, len(vocabulary), dtype=np.int64)
    lookup[0] = EMPTY
    lookup[np.asarray(vocabulary, dtype=np.int64)] = np.arange(len(vocabulary))
    return lookup


@dataclass
class VoxelBatch:
    """Model tensors of a batch of crystals.

    Attributes:
        density: ``(B, G, G, G)`` float32.
        species: ``(B, G, G, G)`` int64 class indices (−1 empty, V unknown element).
        lattice: ``(B,)`` float32 cubic cell length, Å.
        decile: ``(B,)`` int64 formation-energy decile.
        n_sites: ``(B,)`` int64 number of atoms in the cell.
    """

    density: torch.Tensor
    species: torch.Tensor
    lattice: torch.Tensor
    decile: torch.Tensor
    n_sites: torch.Tensor

    @property
    def condition(self) -> torch.Tensor:
        """``(B, 10)`` one-hot decile."""
        return one_hot_decile(self.decile)


def voxel_batch(arrays: VoxelArrays, rows: np.ndarray, lookup: np.ndarray, device: torch.device | str = "cpu",
                rng: np.random.Generator | None = None) -> VoxelBatch:
    """Tensors of ``rows`` of a :class:`~ml.generation.voxel_arrays.VoxelArrays`, each crystal turned by a
    random 90° cube rotation when ``rng`` is given (density and species together; a cubic
    cell's length does not change)."""
    rows = np.asarray(rows)
    density = np.asarray(arrays.density[rows], dtype=np.float32)
    species = np.asarray(arrays.species[rows])
    if rng is not None:
        density, species = density.copy(), species.copy()
        for i in range(len(rows)):
            turn = random_rotation(rng)
            density[i], species[i] = rotate90(density[i], turn), rotate90(species[i], turn)
    lattice = np.asarray(arrays.lattice[rows], dtype=np.float32)[:, 0]
    return VoxelBatch(torch.from_numpy(density).to(device), torch.from_numpy(lookup[species]).to(device),
                      torch.from_numpy(np.ascontiguousarray(lattice)).to(device),
                      torch.from_numpy(np.asarray(arrays.decile[rows], dtype=np.int64)).to(device),
                      torch.from_numpy(np.asarray(arrays.n_sites[rows], dtype=np.int64)).to(device))


def training_rows(arrays: VoxelArrays, config: VAETrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the training crystals (``max_train`` of them at random) and of the
    validation crystals scored each epoch (``max_val`` of a fixed permutation)."""
    rng = np.random.default_rng(config.seed)
    train = np.flatnonzero(arrays.split == "train")
    val = np.flatnonzero(arrays.split == "val")
    if len(train) < 2:
        raise ValueError("fewer than 2 training crystals in the VAE selection")
    if config.max_train is not None and len(train) > config.max_train:
        train = np.sort(rng.choice(train, config.max_train, replace=False))
    if config.max_val is not None and len(val) > config.max_val:
        val = np.sort(np.random.default_rng(config.seed + 1).choice(val, config.max_val, replace=False))
    return train, val


def _batches(rows: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(rows)
    out = [order[s : s + size] for s in range(0, len(order), size)]
    return [b for b in out if len(b) >= 2]  # BatchNorm needs two crystals


# --------------------------------------------------------------------------- validation


@torch.inference_mode()
def evaluate_loss(vae: CondVAE3D, arrays: VoxelArrays, rows: np.ndarray, lookup: np.ndarray, device,
                  batch_size: int = 32) -> dict[str, float]:
    """Mean loss terms on ``rows`` with z = μ, and four quick figures of the reconstructions:
    ``species_voxel_accuracy`` (occupied voxels whose most likely element is right),
    ``cell_length_mae`` (Å), ``site_count_accuracy`` (cells whose most likely site count is
    right) and ``active_dims`` (latent dimensions whose mean posterior variance is below 0.5,
    i.e. that carry information)."""
    vae.eval()
    sums: dict[str, float] = {}
    hits = occupied = abs_err = count_hits = 0.0
    variances = []
    n = 0
    for start in range(0, len(rows), batch_size):
        batch = voxel_batch(arrays, rows[start : start + batch_size], lookup, device)
        out = vae(batch.density, batch.species, batch.lattice, batch.condition, sample=False)
        _, parts = vae_loss(out, batch.density, batch.species, batch.lattice, batch.n_sites, vae.config)
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value * len(batch.density)
        mask = (batch.species >= 0) & (batch.species < vae.config.n_species)
        hits += float((out.species_logits.argmax(dim=1)[mask] == batch.species[mask]).sum())
        occupied += float(mask.sum())
        abs_err += float((out.lattice - batch.lattice).abs().sum())
        count_hits += float((out.site_count_logits.argmax(dim=1) == batch.n_sites).sum())
        variances.append(out.logvar.exp().cpu())
        n += len(batch.density)
    result = {k: v / max(n, 1) for k, v in sums.items()}
    result["species_voxel_accuracy"] = hits / max(occupied, 1)
    result["cell_length_mae"] = abs_err / max(n, 1)
    result["site_count_accuracy"] = count_hits / max(n, 1)
    result["active_dims"] = float((torch.cat(variances).mean(dim=0) < 0.5).sum()) if variances else 0.0
    return result


# --------------------------------------------------------------------------- training


def _same_recipe(config: VAETrainConfig, campaign: Campaign) -> Callable[[dict], None]:
    """The resume check of a run of ``config``: the epochs and ``max_minutes`` may change between
    sessions; nothing else may (raises ``ValueError``)."""

    def check(state: dict) -> None:
        try:
            saved = VAETrainConfig.from_dict(state["config"])
            same = replace(saved, max_minutes=None, epochs=1) == replace(config, max_minutes=None, epochs=1)
        except (TypeError, KeyError, ValueError):  # a checkpoint of an earlier model layout
            same = False
        if not same:
            raise ValueError(f"--resume: {campaign.source()} was made with another configuration or model layout")

    return check


def learning_rate(config: VAETrainConfig, epoch: int) -> float:
    """Cosine decay from ``lr`` (epoch 0) to ``lr · final_lr_ratio`` (last epoch)."""
    progress = epoch / max(config.epochs - 1, 1)
    low = config.lr * config.final_lr_ratio
    return low + 0.5 * (config.lr - low) * (1 + math.cos(math.pi * min(progress, 1.0)))


def _fit_epoch(vae: CondVAE3D, optimiser: torch.optim.Optimizer, arrays: VoxelArrays, train: np.ndarray,
               lookup: np.ndarray, config: VAETrainConfig, epoch: int, device, progress: bool) -> dict:
    """One pass over the training crystals (order, rotations and ε drawn from ``(seed, epoch)``);
    returns ``{"epoch", "lr", <mean loss terms>}``."""
    for group in optimiser.param_groups:
        group["lr"] = learning_rate(config, epoch)
    vae.train()
    rng = np.random.default_rng([config.seed, epoch])
    torch.manual_seed(config.seed * 1000 + epoch)  # ε stream fixed per epoch, so a resume repeats it
    sums: dict[str, float] = {}
    batches = _batches(train, config.batch_size, rng)
    for rows in tqdm(batches, desc=f"VAE epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False,
                     disable=not progress):
        batch = voxel_batch(arrays, rows, lookup, device, rng if config.augment else None)
        out = vae(batch.density, batch.species, batch.lattice, batch.condition)
        loss, parts = vae_loss(out, batch.density, batch.species, batch.lattice, batch.n_sites, config.vae)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value
    return {"epoch": epoch + 1, "lr": learning_rate(config, epoch), **{k: v / max(len(batches), 1) for k, v in sums.items()}}


def train_vae(dataset: Dataset, config: VAETrainConfig, run_dir: Path, out_dir: Path, resume: bool = False,
              device: torch.device | str = "cpu", command: list[str] | None = None,
              arrays: VoxelArrays | None = None, data_note: str | None = None, progress: bool = True) -> dict:
    """Train (or resume) the generator on the VAE selection of ``dataset``.

    Args:
        arrays: replaces the dataset's voxel store (:func:`ml.generation.voxel_arrays.load_voxel_arrays` of the
            recipe's grid), with ``data_note`` saying what it is in the model card.

    Returns:
        ``{"history": [...], "val": final validation figures, "finished": all epochs run}``;
        writes ``out_dir/vae.pt`` (also after a ``max_minutes`` stop, so the latest weights can be used).

    Raises:
        ml.generation.voxel_data.VAEDataError: the voxel arrays are not built. FileNotFoundError: ``resume``
        without a checkpoint. ValueError: a checkpoint of another configuration.
    """
    arrays = arrays if arrays is not None else load_voxel_arrays(dataset, voxel_config=config.voxel_config)
    if arrays.voxel_config.grid_size != config.vae.grid:
        raise ValueError(f"voxel arrays of grid {arrays.voxel_config.grid_size} for a model of grid {config.vae.grid}")
    train, val = training_rows(arrays, config)
    vocabulary = species_vocabulary(arrays, train)
    config = replace(config, vae=replace(config.vae, n_species=len(vocabulary)))
    lookup = class_lookup(vocabulary)
    torch.manual_seed(config.seed)
    vae = CondVAE3D(config.vae).to(device)
    optimiser = torch.optim.Adam(vae.parameters(), lr=config.lr)
    campaign = Campaign(run_dir, out_dir)
    parts = {"state_dict": vae, "optimiser": optimiser}
    start, history, _ = resume_run(campaign, device, _same_recipe(config, campaign), parts) if resume else (0, [], {})
    log.info("VAE: %d training crystals, %d validation, %d elements", len(train), len(val), len(vocabulary))

    def fit(epoch: int) -> dict:
        began = time.time()
        row = _fit_epoch(vae, optimiser, arrays, train, lookup, config, epoch, device, progress)
        row.update({f"val_{k}": v for k, v in evaluate_loss(vae, arrays, val, lookup, device).items()})
        row["seconds"] = time.time() - began
        log.info("VAE epoch %(epoch)d loss %(loss).4f (density %(density_mse).4f species %(species_ce).3f "
                 "kl %(kl).1f) val species acc %(val_species_voxel_accuracy).3f cell MAE %(val_cell_length_mae).3f Å "
                 "site count acc %(val_site_count_accuracy).3f active dims %(val_active_dims).0f (%(seconds).0f s)",
                 row)
        return row

    loop = EpochLoop(campaign, config.epochs, config.max_minutes, history=history)
    loop.run(start, fit, lambda: {"state_dict": vae.state_dict(), "optimiser": optimiser.state_dict(),
                                  "config": asdict(config)})
    history = loop.history
    final = evaluate_loss(vae, arrays, val, lookup, device)
    extra = {"train_config": asdict(config), "history": history, "dataset": dataset.name, "n_train": len(train),
             "n_val": len(val), "data_note": data_note or "", "vocabulary": vocabulary,
             "voxel_config": asdict(arrays.voxel_config), "n_selected": len(arrays), "val_metrics": final,
             "command": shlex.join(command or ["python", "-m", "ml", *sys.argv[1:]])}
    save_voxel_model(Path(out_dir) / VAE_FILE, vae.eval(), extra)
    campaign.keep()  # the campaign's state beside the model (committed with it)
    write_vae_model_card(Path(out_dir))
    return {"history": history, "val": final, "finished": len(history) >= config.epochs}
