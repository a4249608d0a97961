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
training configurations, the command and the history; :func:`write_vae_model_card` writes
``MODEL_CARD.md`` beside them.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ml.training.campaign import Campaign
from ml.data.datasets import Dataset
from ml.models.vae3d import CondVAE3D, VAE3DConfig, one_hot_decile, save_voxel_model
from ml.models.vae3d_loss import vae_loss
from ml.models.vae3d_slots import EMPTY
from ml.generation.voxel_arrays import VoxelArrays, load_voxel_arrays
from ml.generation.rotations import random_rotation, rotate90
from ml.generation.voxels import MAX_ATOMIC_NUMBER, VoxelConfig

log = logging.getLogger(__name__)

VAE_FILE = "vae.pt"
REPORT_FILE = "metrics.json"


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


def _resume(campaign: Campaign, model, optimiser, config: VAETrainConfig, device) -> tuple[int, list[dict]]:
    """Load the campaign's state into ``model`` and ``optimiser``; returns ``(epochs done, history)``.

    Raises:
        FileNotFoundError: no checkpoint. ValueError: one of another recipe or model layout (the
        epochs and ``max_minutes`` may change between sessions; nothing else may).
    """
    source = campaign.source()
    state = campaign.load(device)
    try:
        saved = VAETrainConfig.from_dict(state["config"])
        same = replace(saved, max_minutes=None, epochs=1) == replace(config, max_minutes=None, epochs=1)
        if same:
            model.load_state_dict(state["state_dict"], strict=True)
            optimiser.load_state_dict(state["optimiser"])
    except (TypeError, KeyError, RuntimeError, ValueError):  # a checkpoint of an earlier model layout
        same = False
    if not same:
        raise ValueError(f"--resume: {source} was made with another configuration or model layout")
    return int(state["epoch"]), list(state["history"])


def learning_rate(config: VAETrainConfig, epoch: int) -> float:
    """Cosine decay from ``lr`` (epoch 0) to ``lr · final_lr_ratio`` (last epoch)."""
    progress = epoch / max(config.epochs - 1, 1)
    low = config.lr * config.final_lr_ratio
    return low + 0.5 * (config.lr - low) * (1 + math.cos(math.pi * min(progress, 1.0)))


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
    start, history = _resume(campaign, vae, optimiser, config, device) if resume else (0, [])
    log.info("VAE: %d training crystals, %d validation, %d elements", len(train), len(val), len(vocabulary))
    began_run = time.time()
    for epoch in range(start, config.epochs):
        if config.max_minutes is not None and (time.time() - began_run) / 60 > config.max_minutes:
            log.info("stopping after %d epochs: max_minutes %.0f reached (resume to continue)", epoch, config.max_minutes)
            break
        began = time.time()
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
        metrics = evaluate_loss(vae, arrays, val, lookup, device)
        row = {"epoch": epoch + 1, "lr": learning_rate(config, epoch),
               **{k: v / max(len(batches), 1) for k, v in sums.items()}}
        row.update({f"val_{k}": v for k, v in metrics.items()})
        row["seconds"] = time.time() - began
        history.append(row)
        log.info("VAE epoch %(epoch)d loss %(loss).4f (density %(density_mse).4f species %(species_ce).3f "
                 "kl %(kl).1f) val species acc %(val_species_voxel_accuracy).3f cell MAE "
                 "%(val_cell_length_mae).3f Å site count acc %(val_site_count_accuracy).3f active dims %(val_active_dims).0f (%(seconds).0f s)", row)
        campaign.save({"state_dict": vae.state_dict(), "optimiser": optimiser.state_dict(), "epoch": epoch + 1,
                       "history": history, "config": asdict(config)}, history)
    final = evaluate_loss(vae, arrays, val, lookup, device)
    extra = {"train_config": asdict(config), "history": history, "dataset": dataset.name, "n_train": len(train),
             "n_val": len(val), "data_note": data_note or "", "vocabulary": vocabulary,
             "voxel_config": asdict(arrays.voxel_config), "n_selected": len(arrays), "val_metrics": final,
             "command": shlex.join(command or ["python", "-m", "ml", *sys.argv[1:]])}
    save_voxel_model(Path(out_dir) / VAE_FILE, vae.eval(), extra)
    campaign.keep()  # the campaign's state beside the model (committed with it)
    write_vae_model_card(Path(out_dir))
    return {"history": history, "val": final, "finished": len(history) >= config.epochs}


# --------------------------------------------------------------------------- model card

#: Where the CPU recipe departs from Court et al. and why (the model card's design section;
#: the module docstring of :mod:`ml.models.vae3d` gives the equations).
DESIGN_NOTES = [
    "Departures from the paper, each decided by a measurement on 2 CPU cores (issue 11 and this session's runs):",
    "",
    "- 16³ grid instead of 32³: a VAE step costs 0.8 s instead of 2.8 s (batch 8), and 6,562 of the 6,608",
    "  crystals have every site on the a/4 sub-lattice of the cubic cell, which a 16³ grid holds exactly (the 46",
    "  others, 34 AB such as B20 FeSi and 12 ABX3, are decoded at the nearest voxel centre, at most half a voxel",
    "  off).",
    "- Species are channels of the VAE instead of a UNet segmenting the decoded density (the first CPU",
    "  generator's UNet labelled 1.9 % of atom voxels right; a 16³ UNet on TRUE densities recovered 26 % of",
    "  compositions): the crystal's distinct elements fill K = 3 slots, the decoder reads one element vector per",
    "  slot from z (tied to the encoder's element embedding: logits −‖v_k − e‖²) and paints at each voxel which",
    "  slot it holds; both are supervised. The slots are ordered by where each element first occurs in the grid",
    "  (the origin site is slot 0 in every crystal), which makes the slot map the same for every crystal of a",
    "  prototype. Validation atom voxels right after epochs 1 / 2: 47 % / 57 % with latent slots (the previous",
    "  model: 73 % after 9 epochs, species recall on sites 62.7 %), 45.8 % / 49.8 % with slots ordered by atomic",
    "  number (the slot map stayed near chance), 43.5 % / 49.5 % with the loss minimised over slot",
    "  permutations, 55.8 % / 57.9 % by atomic number with the coarse head below, 95.9 % / 96.3 % by first",
    "  occurrence. Without a UNet there is no perceptual (DFC) term, and the density keeps unit-height",
    "  Gaussians (the paper's Z weighting made elements readable from the density for the UNet; the species",
    "  channels carry them here).",
    "- A coarse position-specific head (a linear map of z to (1 + K) maps at 8³, zero-initialised, up-sampled",
    "  and added to the density and slot logits) gives the decoder a path from z to each voxel that",
    "  translation-equivariant convolutions up-sampled from 2³ lack.",
    "- The cell-length term weighs 1000 instead of 10: every atom distance scales with the cell, and the previous",
    "  model's reconstructions were 0.32 Å off with 10 (validation cell-length MAE after 6 epochs: 0.30 Å with 10,",
    "  0.14 Å with 1000).",
    "- Periodic position channels (sin, cos at 1, 2, 4 cycles per cell) enter every decoder convolution:",
    "  without them the decoder reproduced only the mean density level (validation MSE 0.0257 after 3 epochs;",
    "  a constant gives 0.0252); with them 0.009 after 150 steps on 64 crystals.",
    "- The cubic cell length comes from a head on z (the coordinate channels of the first generator collapsed to",
    "  a = 4.87 Å for every crystal).",
    "- Atoms are decoded as density peaks, each taking the element its voxels vote for (one decision per site).",
    "- A site-count head on z (classes 0–40, cross entropy weight 1) says how many atoms the cell holds, and the",
    "  decoder keeps that many of the highest peaks above 0.2 (`ml.generation.decode.CANDIDATE_THRESHOLD`) instead of",
    "  every peak above one threshold. The error it removes: a sub-lattice painted at half height where it should",
    "  be empty (half-Heusler 12 → 16 sites, zinc blende 8 → 16). On the previous model's grids the true count",
    "  would have given 97.0 % exact compositions of 743 training crystals instead of 88.0 %; a linear probe read",
    "  the count from that model's μ for 94.3 % of held-out training crystals. A BCE occupancy channel gating the",
    "  density (16 epochs, 47.7 min) did not help: |Δ sites| 0.462 against 0.419.",
    "- Sites sit at the centres of their peak voxels (no sub-voxel refinement): 99.4 % of the set's crystals have",
    "  every site on the 16³ grid, and the refinement moved sampled peaks off their symmetric places (on the",
    "  previous model, 49.6 % → 71.0 % strictly valid samples around 5 validation bases, mostly 'not cubic').",
    "- Random generation draws z from a mixture fitted to the training crystals' latent means per decile",
    "  (`latent_prior.npz`) by default; N(0, I) is measured beside it (`--prior normal`).",
]


def write_vae_model_card(model_dir: Path, report: dict | None = None) -> Path:
    """``MODEL_CARD.md`` of a generator folder from what its ``vae.pt`` carries (configuration,
    command, data, epochs, wall time, validation figures) and, when given, the evaluation
    ``report`` of :func:`ml.evaluation.generator.evaluate_vae` (also kept as ``metrics.json``)."""
    model_dir = Path(model_dir)
    if report is not None:
        (model_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, default=float))
    elif (model_dir / REPORT_FILE).is_file():
        report = json.loads((model_dir / REPORT_FILE).read_text())
    lines = [f"# Model card: {model_dir.name}", "",
             "Crystal generator after Court et al., J. Chem. Inf. Model. 60, 4518 (2020): a conditional VAE on voxel",
             "crystals (density and per-voxel species channels, formation-energy-decile condition; `ml.models.vae3d`).",
             "", *DESIGN_NOTES, ""]
    path = model_dir / VAE_FILE
    if not path.is_file():
        lines += ["not trained yet", ""]
    else:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        config, history = payload.get("train_config", {}), payload.get("history", [])
        size = sum(v.numel() for v in payload["state_dict"].values() if v.dtype.is_floating_point)
        minutes = sum(h["seconds"] for h in history) / 60
        lines += [f"- command: `{payload.get('command')}`",
                  (f"- data: `{payload.get('dataset')}`, the VAE selection (`ml.generation.voxel_data`: cubic AB, ABX3 perovskites, "
                   f"Heusler and half-Heusler, ≤ 40 sites; {payload.get('n_selected')} crystals), hash split; "
                   f"{payload.get('n_train')} training crystals, {payload.get('n_val')} validation crystals scored "
                   f"each epoch; {len(payload.get('vocabulary', []))} elements"),
                  *([f"- data note: {payload['data_note']}"] if payload.get("data_note") else []),
                  f"- voxels: {json.dumps(payload.get('voxel_config'))}",
                  (f"- configuration `{config.get('name')}`: {json.dumps(config.get('vae'))}; lr {config.get('lr')} "
                   f"(cosine to ×{config.get('final_lr_ratio')}), batch {config.get('batch_size')}, epochs "
                   f"{config.get('epochs')}, random 90° rotations {config.get('augment')}"),
                  f"- parameters: {size:,}; file {path.stat().st_size / 1e6:.1f} MB",
                  (f"- epochs run: {len(history)}; wall time {minutes:.1f} min on {platform.machine()} CPU, "
                   f"Python {platform.python_version()}, torch {torch.__version__}"),
                  f"- final validation: {json.dumps({k: round(float(v), 4) for k, v in payload.get('val_metrics', {}).items()})}",
                  ""]
        if history:
            keys = list(history[0])
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(f"{h[k]:.4g}" if isinstance(h[k], float) else str(h[k]) for k in keys) + " |"
                      for h in history]
            lines.append("")
    if report is not None:
        lines += ["## Evaluation (`python -m ml evaluate-vae`)", "", report.get("markdown", ""), ""]
    out = model_dir / "MODEL_CARD.md"
    out.write_text("\n".join(lines))
    return out
