"""Training of the crystal generator of Court et al. (J. Chem. Inf. Model. 60, 4518, 2020):
first the segmentation UNet (:func:`train_unet`), then the Cond-DFC-VAE with the frozen UNet
as its perceptual model (:func:`train_vae`).

Named configurations (:data:`VAE_TRAIN_CONFIGS`):

- ``paper``: the published numbers — UNet Adam lr 3e-6, batch 10; VAE Adam lr 1e-4, batch 20,
  256-d latent, β = 0.0005, α = 1; random 90° rotations. The encoder widths (32–256) and the
  epoch counts (100 each) are ours: ``../shared/docs/method.md`` does not give them. For a GPU.
- ``cpu``: what trains in ~30–40 min per model on one shared CPU core. Reduced: the UNet to
  8 base channels, 3 levels, one convolution per level, lr 3e-6 → 1e-3 (at 3e-6 a few thousand
  steps move nothing); the VAE's encoder widths to (8, 16, 32, 64) and lr 1e-4 → 1e-3; the
  training set to ``max_train`` = 2,000 random training crystals, 4 UNet and 3 VAE epochs. Kept: the
  latent size 256, β, α, the batch sizes, the losses, the condition, the augmentation.

Both stages write ``run_dir/<stage>/last.pt`` (model, optimiser, epoch, history, config) and
``run_dir/<stage>/log.csv`` after every epoch, and resume from them with ``resume=True``; the
final weights go to ``<out_dir>/unet.pt`` and ``<out_dir>/vae.pt`` (with the history, the data
and voxel configurations), and :func:`write_vae_model_card` writes ``MODEL_CARD.md`` beside them.
"""

from __future__ import annotations

import csv
import json
import logging
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ml.datasets import Dataset
from ml.models.unet3d import (
    UNet3D,
    UNet3DConfig,
    predict_species,
    species_class_weights,
    unet_loss,
)
from ml.models.vae3d import (
    CondVAE3D,
    VAE3DConfig,
    load_voxel_model,
    one_hot_decile,
    save_voxel_model,
    vae_loss,
)
from ml.vae_data import VoxelArrays, load_voxel_arrays
from ml.voxels import (
    MAX_ATOMIC_NUMBER,
    lattice_from_coordinates,
    model_input,
    random_rotation,
    rotate90,
    rotate_lattice,
)

log = logging.getLogger(__name__)

UNET_FILE = "unet.pt"
VAE_FILE = "vae.pt"


@dataclass(frozen=True)
class VAETrainConfig:
    """One recipe for both stages; saved inside every checkpoint.

    Attributes:
        name: ``cpu`` or ``paper``.
        unet, vae: model sizes (the VAE's β and α live in its config).
        unet_lr, unet_batch_size, unet_epochs: Adam learning rate, crystals per step, epochs of the UNet.
        vae_lr, vae_batch_size, vae_epochs: the same for the VAE.
        max_train: use this many training crystals, drawn at random with ``seed`` (``None``: all).
        max_val: validation crystals scored after each epoch (``None``: all).
        augment: a random one of the 24 proper 90° cube rotations per crystal and step.
        seed: seed of the subset, the order, the rotations and the VAE's ε.
    """

    name: str
    unet: UNet3DConfig = field(default_factory=UNet3DConfig)
    vae: VAE3DConfig = field(default_factory=VAE3DConfig)
    unet_lr: float = 3e-6
    unet_batch_size: int = 10
    unet_epochs: int = 100
    vae_lr: float = 1e-4
    vae_batch_size: int = 20
    vae_epochs: int = 100
    max_train: int | None = None
    max_val: int | None = None
    augment: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.unet_batch_size, self.vae_batch_size) < 2 or min(self.unet_epochs, self.vae_epochs) < 1:
            raise ValueError(f"invalid VAETrainConfig {self}")
        if self.unet_lr <= 0 or self.vae_lr <= 0:
            raise ValueError("learning rates must be > 0")
        if (self.max_train is not None and self.max_train < 2) or (self.max_val is not None and self.max_val < 1):
            raise ValueError("max_train must be ≥ 2 and max_val ≥ 1")
        if self.unet.grid != self.vae.grid:
            raise ValueError("the UNet and the VAE must use the same grid")

    @classmethod
    def from_dict(cls, data: dict) -> VAETrainConfig:
        data = dict(data)
        data["unet"] = UNet3DConfig.from_dict(data["unet"])
        data["vae"] = VAE3DConfig.from_dict(data["vae"])
        return cls(**data)


_SPECIES = MAX_ATOMIC_NUMBER + 1  # classes 0 (empty) … 118

VAE_TRAIN_CONFIGS: dict[str, VAETrainConfig] = {
    "paper": VAETrainConfig(
        name="paper",
        unet=UNet3DConfig(n_species=_SPECIES, base_channels=16, depth=3, convs_per_level=2),
        vae=VAE3DConfig(latent_dim=256, channels=(32, 64, 128, 256)),
    ),
    "cpu": VAETrainConfig(
        name="cpu",
        unet=UNet3DConfig(n_species=_SPECIES, base_channels=8, depth=3, convs_per_level=1),
        vae=VAE3DConfig(latent_dim=256, channels=(8, 16, 32, 64)),
        unet_lr=1e-3, unet_epochs=4, vae_lr=1e-3, vae_epochs=3, max_train=2000, max_val=200,
    ),
}


# --------------------------------------------------------------------------- batches


@dataclass
class VoxelBatch:
    """Model tensors of a batch of crystals.

    Attributes:
        x: ``(B, 4, G, G, G)`` float32 VAE input ``[M, x, y, z]``.
        species: ``(B, G, G, G)`` int64 atomic numbers (0 empty).
        decile: ``(B,)`` int64 formation-energy decile.
        lattice: ``(B, 3)`` float32 cell lengths, Å (after the rotation).
    """

    x: torch.Tensor
    species: torch.Tensor
    decile: torch.Tensor
    lattice: torch.Tensor

    @property
    def density(self) -> torch.Tensor:
        """``(B, 1, G, G, G)``: the density channel (the UNet's input)."""
        return self.x[:, :1]

    @property
    def condition(self) -> torch.Tensor:
        """``(B, 10)`` one-hot decile."""
        return one_hot_decile(self.decile)


def voxel_batch(arrays: VoxelArrays, rows: np.ndarray, device: torch.device | str = "cpu",
                rng: np.random.Generator | None = None) -> VoxelBatch:
    """Tensors of ``rows`` of a :class:`~ml.vae_data.VoxelArrays`, each crystal turned by a
    random 90° cube rotation when ``rng`` is given (density, species and lattice together)."""
    rows = np.asarray(rows)
    density = np.asarray(arrays.density[rows], dtype=np.float32)
    species = np.asarray(arrays.species[rows])
    lattice = np.asarray(arrays.lattice[rows], dtype=np.float32).copy()
    if rng is not None:
        density, species = density.copy(), species.copy()
        for i in range(len(rows)):
            turn = random_rotation(rng)
            density[i], species[i] = rotate90(density[i], turn), rotate90(species[i], turn)
            lattice[i] = rotate_lattice(lattice[i], turn)
    x = model_input(density, lattice, arrays.voxel_config)
    return VoxelBatch(
        torch.from_numpy(x).to(device),
        torch.from_numpy(species.astype(np.int64)).to(device),
        torch.from_numpy(np.asarray(arrays.decile[rows], dtype=np.int64)).to(device),
        torch.from_numpy(lattice).to(device),
    )


def training_rows(arrays: VoxelArrays, config: VAETrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the training crystals (``max_train`` of them at random) and of the
    validation crystals scored each epoch (the first ``max_val`` of a fixed permutation)."""
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


# --------------------------------------------------------------------------- checkpoints


class _Run:
    """``run_dir/<stage>/last.pt`` and ``log.csv`` of one stage."""

    def __init__(self, run_dir: Path, stage: str) -> None:
        self.folder = Path(run_dir) / stage
        self.checkpoint = self.folder / "last.pt"

    def resume(self, model: torch.nn.Module, optimiser: torch.optim.Optimizer, config: VAETrainConfig,
               device) -> tuple[int, list[dict]]:
        if not self.checkpoint.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {self.checkpoint}")
        state = torch.load(self.checkpoint, map_location=device, weights_only=True)
        if VAETrainConfig.from_dict(state["config"]) != config:
            raise ValueError(f"--resume: {self.checkpoint} was made with another configuration")
        model.load_state_dict(state["state_dict"], strict=True)
        optimiser.load_state_dict(state["optimiser"])
        return int(state["epoch"]), list(state["history"])

    def save(self, model, optimiser, epoch: int, history: list[dict], config: VAETrainConfig) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint.with_name("last.pt.part")
        torch.save({"state_dict": model.state_dict(), "optimiser": optimiser.state_dict(), "epoch": epoch,
                    "history": history, "config": asdict(config)}, tmp)
        tmp.replace(self.checkpoint)
        with open(self.folder / "log.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)


def _extra(dataset: Dataset, arrays: VoxelArrays, config: VAETrainConfig, history: list[dict], n_train: int,
           command: list[str] | None, data_note: str | None) -> dict:
    return {"train_config": asdict(config), "history": history, "dataset": dataset.name, "n_train": n_train,
            "data_note": data_note or "",
            "voxel_config": asdict(arrays.voxel_config), "n_selected": len(arrays),
            "command": shlex.join(command or ["python", "-m", "ml", *sys.argv[1:]])}


# --------------------------------------------------------------------------- UNet


def species_counts(arrays: VoxelArrays, rows: np.ndarray, n_classes: int, chunk: int = 256) -> torch.Tensor:
    """Voxel count of each class 0 … n_classes−1 over ``rows``, ``(n_classes,)`` float64."""
    counts = np.zeros(n_classes, dtype=np.float64)
    for start in range(0, len(rows), chunk):
        block = np.asarray(arrays.species[np.sort(rows[start : start + chunk])])
        counts += np.bincount(block.ravel(), minlength=n_classes)[:n_classes]
    return torch.from_numpy(counts)


@torch.inference_mode()
def evaluate_unet(unet: UNet3D, arrays: VoxelArrays, rows: np.ndarray, device, batch_size: int = 10) -> dict[str, float]:
    """Loss and recalls of the UNet on true densities.

    Returns:
        ``loss``; ``nonzero_recall``: of the voxels whose true species is non-zero, the share
        predicted with exactly that species (the paper's 87 %); ``occupied_recall``: the share
        predicted non-empty; ``occupied_precision``.
    """
    unet.eval()
    total = hits = occupied_hits = predicted_occupied = true_occupied = 0.0
    n = 0
    for start in range(0, len(rows), batch_size):
        batch = voxel_batch(arrays, rows[start : start + batch_size], device)
        out = unet(batch.density)
        loss, _ = unet_loss(out, batch.species, unet.class_weights)
        total += float(loss) * len(batch.x)
        n += len(batch.x)
        predicted = predict_species(out)
        mask = batch.species > 0
        hits += float((predicted[mask] == batch.species[mask]).sum())
        occupied_hits += float((predicted[mask] > 0).sum())
        predicted_occupied += float((predicted > 0).sum())
        true_occupied += float(mask.sum())
    return {"loss": total / max(n, 1), "nonzero_recall": hits / max(true_occupied, 1),
            "occupied_recall": occupied_hits / max(true_occupied, 1),
            "occupied_precision": occupied_hits / max(predicted_occupied, 1)}


def train_unet(dataset: Dataset, config: VAETrainConfig, run_dir: Path, out_dir: Path, resume: bool = False,
               device: torch.device | str = "cpu", command: list[str] | None = None,
               arrays: VoxelArrays | None = None, data_note: str | None = None) -> dict:
    """Train (or resume) the segmentation UNet on the VAE selection of ``dataset``.

    ``arrays`` replaces the dataset's voxel store (:func:`ml.vae_data.load_voxel_arrays`), with
    ``data_note`` saying what it is in the model card.

    Returns:
        ``{"history": [...], "val": final validation metrics}``; writes ``out_dir/unet.pt``.

    Raises:
        ml.vae_data.VAEDataError: the voxel arrays are not built. FileNotFoundError: ``resume``
        without a checkpoint. ValueError: a checkpoint of another configuration.
    """
    arrays = arrays if arrays is not None else load_voxel_arrays(dataset)
    train, val = training_rows(arrays, config)
    torch.manual_seed(config.seed)
    unet = UNet3D(config.unet).to(device)
    unet.class_weights.copy_(species_class_weights(species_counts(arrays, train, config.unet.n_species)))
    optimiser = torch.optim.Adam(unet.parameters(), lr=config.unet_lr)
    run = _Run(run_dir, "unet")
    start, history = run.resume(unet, optimiser, config, device) if resume else (0, [])
    log.info("UNet: %d training crystals, %d validation", len(train), len(val))
    for epoch in range(start, config.unet_epochs):
        began = time.time()
        unet.train()
        rng = np.random.default_rng([config.seed, epoch])
        total, batches = 0.0, _batches(train, config.unet_batch_size, rng)
        for rows in tqdm(batches, desc=f"UNet epoch {epoch + 1}/{config.unet_epochs}", unit="batch", leave=False):
            batch = voxel_batch(arrays, rows, device, rng if config.augment else None)
            loss, _ = unet.loss(batch.density, batch.species)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
        metrics = evaluate_unet(unet, arrays, val, device)
        history.append({"epoch": epoch + 1, "loss": total / max(len(batches), 1), "val_loss": metrics["loss"],
                        "val_nonzero_recall": metrics["nonzero_recall"],
                        "val_occupied_recall": metrics["occupied_recall"], "seconds": time.time() - began})
        log.info("UNet epoch %(epoch)d loss %(loss).4f val %(val_loss).4f recall %(val_nonzero_recall).3f "
                 "(%(seconds).0f s)", history[-1])
        run.save(unet, optimiser, epoch + 1, history, config)
    unet.eval()
    final = evaluate_unet(unet, arrays, val, device)
    save_voxel_model(Path(out_dir) / UNET_FILE, unet, {**_extra(dataset, arrays, config, history, len(train), command,
                                                                data_note),
                                                        "val_metrics": final, "n_val": len(val)})
    write_vae_model_card(Path(out_dir))
    return {"history": history, "val": final}


# --------------------------------------------------------------------------- VAE


@torch.inference_mode()
def evaluate_vae_loss(vae: CondVAE3D, unet: UNet3D, arrays: VoxelArrays, rows: np.ndarray, device,
                      batch_size: int = 20) -> dict[str, float]:
    """Mean loss terms on ``rows`` (z = μ) and the cell-length MAE (Å) of the reconstructions
    (lengths read back from the coordinate channels, :func:`ml.voxels.lattice_from_coordinates`)."""
    vae.eval()
    sums: dict[str, float] = {}
    abs_err, n = 0.0, 0
    for start in range(0, len(rows), batch_size):
        batch = voxel_batch(arrays, rows[start : start + batch_size], device)
        out = vae(batch.x, batch.condition, sample=False)
        _, parts = vae_loss(out, batch.x, vae.config, unet)
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value * len(batch.x)
        lengths = lattice_from_coordinates(out.reconstruction[:, 1:].float().cpu().numpy(), arrays.voxel_config)
        abs_err += float(np.abs(lengths - batch.lattice.cpu().numpy()).mean(axis=1).sum())
        n += len(batch.x)
    result = {k: v / max(n, 1) for k, v in sums.items()}
    result["cell_length_mae"] = abs_err / max(n, 1)
    return result


def train_vae(dataset: Dataset, config: VAETrainConfig, run_dir: Path, out_dir: Path, resume: bool = False,
              device: torch.device | str = "cpu", command: list[str] | None = None,
              arrays: VoxelArrays | None = None, data_note: str | None = None) -> dict:
    """Train (or resume) the Cond-DFC-VAE with the frozen UNet of ``out_dir/unet.pt`` as its
    perceptual model (``arrays``, ``data_note``: as in :func:`train_unet`).

    Returns:
        ``{"history": [...], "val": final validation losses}``; writes ``out_dir/vae.pt``.

    Raises:
        FileNotFoundError: no trained UNet in ``out_dir`` (train it first), or ``resume``
        without a checkpoint. ml.vae_data.VAEDataError: the voxel arrays are not built.
    """
    unet, _ = load_voxel_model(Path(out_dir) / UNET_FILE, "unet3d", device)
    unet.requires_grad_(False)
    arrays = arrays if arrays is not None else load_voxel_arrays(dataset)
    train, val = training_rows(arrays, config)
    torch.manual_seed(config.seed)
    vae = CondVAE3D(config.vae).to(device)
    optimiser = torch.optim.Adam(vae.parameters(), lr=config.vae_lr)
    run = _Run(run_dir, "vae")
    start, history = run.resume(vae, optimiser, config, device) if resume else (0, [])
    log.info("VAE: %d training crystals, %d validation", len(train), len(val))
    for epoch in range(start, config.vae_epochs):
        began = time.time()
        vae.train()
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 1000 + epoch)  # ε stream fixed per epoch, so a resume repeats it
        sums: dict[str, float] = {}
        batches = _batches(train, config.vae_batch_size, rng)
        for rows in tqdm(batches, desc=f"VAE epoch {epoch + 1}/{config.vae_epochs}", unit="batch", leave=False):
            batch = voxel_batch(arrays, rows, device, rng if config.augment else None)
            loss, parts = vae_loss(vae(batch.x, batch.condition), batch.x, config.vae, unet)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value
        metrics = evaluate_vae_loss(vae, unet, arrays, val, device)
        row = {"epoch": epoch + 1, **{k: v / max(len(batches), 1) for k, v in sums.items()}}
        row.update({f"val_{k}": v for k, v in metrics.items()})
        row["seconds"] = time.time() - began
        history.append(row)
        log.info("VAE epoch %(epoch)d loss %(loss).4f (mse %(mse).4f kl %(kl).1f perceptual %(perceptual).4f) "
                 "val loss %(val_loss).4f cell MAE %(val_cell_length_mae).3f Å (%(seconds).0f s)", row)
        run.save(vae, optimiser, epoch + 1, history, config)
    final = evaluate_vae_loss(vae, unet, arrays, val, device)
    save_voxel_model(Path(out_dir) / VAE_FILE, vae.eval(), {**_extra(dataset, arrays, config, history, len(train), command,
                                                                    data_note),
                                                            "val_metrics": final, "n_val": len(val)})
    write_vae_model_card(Path(out_dir))
    return {"history": history, "val": final}


# --------------------------------------------------------------------------- model card

REPORT_FILE = "metrics.json"


def write_vae_model_card(model_dir: Path, report: dict | None = None) -> Path:
    """``MODEL_CARD.md`` of a generator folder from what its ``unet.pt`` / ``vae.pt`` carry
    (configuration, command, data, epochs, wall time, validation metrics) and, when given, the
    evaluation ``report`` of :func:`ml.evaluate_vae.evaluate_vae` (also kept as ``metrics.json``)."""
    model_dir = Path(model_dir)
    if report is not None:
        (model_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, default=float))
    elif (model_dir / REPORT_FILE).is_file():
        report = json.loads((model_dir / REPORT_FILE).read_text())
    lines = [f"# Model card: {model_dir.name}", "",
             "Crystal generator after Court et al., J. Chem. Inf. Model. 60, 4518 (2020): a 3D UNet that segments a",
             "voxel density into species (`unet.pt`, `ml.models.unet3d`) and a conditional deep-feature-consistent VAE",
             "on 32³ voxel crystals with a formation-energy-decile condition (`vae.pt`, `ml.models.vae3d`).", ""]
    for name, title in ((UNET_FILE, "UNet"), (VAE_FILE, "VAE")):
        path = model_dir / name
        if not path.is_file():
            lines += [f"## {title}", "", "not trained yet", ""]
            continue
        payload = torch.load(path, map_location="cpu", weights_only=True)
        config, history = payload.get("train_config", {}), payload.get("history", [])
        stage = "unet" if name == UNET_FILE else "vae"
        size = sum(v.numel() for v in payload["state_dict"].values() if v.dtype.is_floating_point)
        lines += [f"## {title}", "",
                  f"- command: `{payload.get('command')}`",
                  (f"- data: `{payload.get('dataset')}`, the VAE selection (`ml.vae_data`: cubic AB, ABX3 perovskites, "
                  f"Heusler and half-Heusler, ≤ 40 sites; {payload.get('n_selected')} crystals), hash split; "
                  f"{payload.get('n_train')} training crystals, {payload.get('n_val')} validation crystals scored"),
                  *([f"- data note: {payload['data_note']}"] if payload.get("data_note") else []),
                  (f"- configuration `{config.get('name')}`: {json.dumps(config.get(stage))}; lr "
                  f"{config.get(stage + '_lr')}, batch {config.get(stage + '_batch_size')}, epochs "
                  f"{config.get(stage + '_epochs')}, random 90° rotations {config.get('augment')}"),
                  f"- parameters: {size:,}; file {path.stat().st_size / 1e6:.1f} MB",
                  (f"- epochs run: {len(history)}; wall time {sum(h['seconds'] for h in history) / 60:.1f} min on "
                  f"{platform.machine()} CPU (shared, niced), Python {platform.python_version()}"),
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
    path = model_dir / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path
