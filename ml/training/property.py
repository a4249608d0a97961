"""CGCNN property predictors (Court et al., J. Chem. Inf. Model. 60, 4518, 2020): training,
checkpoints, and the public prediction API.

Public API (used by the VAE generator and by the evaluation)::

    model = load_property_model("cgcnn-formation-energy")   # or "cgcnn-band-gap"
    model.predict(structures)   # (n,) float64 in model.unit (eV/atom, eV)
    model.latent(structures)    # (n, 64) the mean-pooled crystal vector (concept baseline)

Training (``python -m ml train-property --target formation_energy_per_atom``) uses the
materials of the ``train`` split (:mod:`ml.data.splits`) that have the property, in the first
``train_shards`` graph-feature shards (each a random ~1/71 of ``mp2024``; the CPU budget),
validates each epoch on the ``val`` materials of the same shards, and reports the MAE on the
whole ``test`` split. The model file carries its configuration and target normaliser and is
loaded with ``strict=True``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ml.features.atom_features import atom_feature_table
from ml.data.batches import GraphStore
from ml.data.datasets import Dataset
from ml.mapping.embed import apply_to_graphs
from ml.data.featurize import featurize, load_features
from ml.data.shard_cache import n_shards_for
from ml.features.graph import GraphConfig, crystal_graph
from ml.models.checkpoint import CheckpointFormat, load_checkpoint, save_checkpoint
from ml.models.property_regressor import PropertyRegressor, PropertyRegressorConfig
from ml.models.registry import resolve_model
from ml.data.splits import assign_splits
from ml.training.campaign import Campaign
from ml.training.loop import EpochLoop
from ml.training.loop import resume as run_resume
from ml.training.model_card import write_property_model_card

log = logging.getLogger(__name__)

CHECKPOINT_KIND = "cgcnn-property"
CHECKPOINT_FORMAT = 1
CHECKPOINT = CheckpointFormat(CHECKPOINT_KIND, CHECKPOINT_FORMAT, "CGCNN property-model",
                              "python -m ml train-property --target <property column>")


@dataclass(frozen=True)
class PropertyTrainConfig:
    """One property-model training recipe; saved in every checkpoint.

    Attributes:
        model: the regressor.
        batch_size: crystals per Adam step.
        lr: peak learning rate (cosine decay to 0 over all steps).
        epochs: passes over the training materials.
        train_shards: use the first this many graph shards (``None``: all).
        seed: permutation seed.
    """

    model: PropertyRegressorConfig
    batch_size: int = 128
    lr: float = 2e-3
    epochs: int = 5
    train_shards: int | None = 48
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 2 or self.lr <= 0 or self.epochs < 1 or (self.train_shards is not None and self.train_shards < 1):
            raise ValueError(f"invalid PropertyTrainConfig {self}")

    @classmethod
    def from_dict(cls, data: dict) -> PropertyTrainConfig:
        data = dict(data)
        data["model"] = PropertyRegressorConfig(**data["model"])
        return cls(**data)


#: The committed models: name → recipe (the CLI's ``--target`` picks one).
PROPERTY_MODELS: dict[str, PropertyTrainConfig] = {
    "cgcnn-formation-energy": PropertyTrainConfig(
        model=PropertyRegressorConfig(target="formation_energy_per_atom", unit="eV/atom")),
    "cgcnn-band-gap": PropertyTrainConfig(
        model=PropertyRegressorConfig(target="band_gap", unit="eV", non_negative=True), train_shards=24),
}


def model_name_for(target: str) -> str:
    """The committed model name of a target column.

    Raises:
        ValueError: no recipe for this target.
    """
    for name, config in PROPERTY_MODELS.items():
        if config.model.target == target:
            return name
    known = ", ".join(c.model.target for c in PROPERTY_MODELS.values())
    raise ValueError(f"no property model for target {target!r}; known targets: {known}")


# --------------------------------------------------------------------------- the public model


@dataclass
class PropertyModel:
    """A trained CGCNN property predictor on one device, in eval mode.

    Attributes:
        name: model name (``cgcnn-formation-energy``). net: the :class:`PropertyRegressor`.
        payload: everything saved with it (training config, history, test MAE …).
    """

    name: str
    net: PropertyRegressor
    payload: dict = field(repr=False)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def target(self) -> str:
        """The predicted column, e.g. ``formation_energy_per_atom``."""
        return self.net.config.target

    @property
    def unit(self) -> str:
        """Unit of :meth:`predict` (``eV/atom`` for formation energy, ``eV`` for band gap)."""
        return self.net.config.unit

    @property
    def latent_dim(self) -> int:
        return self.net.config.hidden

    def predict(self, structures: list) -> np.ndarray:
        """Predicted property of pymatgen ``Structure`` s, ``(n,)`` float64 in :attr:`unit`
        (formation energy per atom in eV/atom; band gap in eV, never negative).

        Raises:
            ml.features.errors.FeaturisationError: a structure cannot be made a crystal graph
                (disordered, empty, more than 1000 sites, atoms closer than 0.1 Å).
        """
        if not structures:
            return np.zeros(0)
        return self.predict_graphs(_store_of(structures)).astype(np.float64)

    def latent(self, structures: list) -> np.ndarray:
        """The mean-pooled crystal vector of each structure after the graph convolution,
        ``(n, latent_dim)`` float32 (raises as :meth:`predict`)."""
        if not structures:
            return np.zeros((0, self.latent_dim), np.float32)
        return self.latent_graphs(_store_of(structures))

    def predict_graphs(self, store: GraphStore, rows: np.ndarray | None = None, progress: bool = False) -> np.ndarray:
        """:meth:`predict` for cached graphs (``rows`` of ``store``, all when ``None``), ``(n,)`` float32."""
        out = apply_to_graphs(self.net, self.net.predict, store, rows, 1, device=self.device, progress=progress,
                              desc=f"predicting {self.target}")
        return out.reshape(-1)

    def latent_graphs(self, store: GraphStore, rows: np.ndarray | None = None, progress: bool = False) -> np.ndarray:
        """:meth:`latent` for cached graphs, ``(n, latent_dim)`` float32."""
        return apply_to_graphs(self.net, self.net.latent, store, rows, self.latent_dim, device=self.device,
                               progress=progress, desc=f"{self.name} latents")


def _store_of(structures: list) -> GraphStore:
    return GraphStore.from_graphs([crystal_graph(s, GraphConfig()) for s in structures])


def save_property_model(path: Path, net: PropertyRegressor, extra: dict | None = None) -> None:
    """Write ``{"kind", "format", "config", "state_dict", **extra}`` atomically to ``path``
    (:func:`ml.models.checkpoint.save_checkpoint`).

    Raises:
        ValueError: ``extra`` would overwrite one of the checkpoint's own fields.
    """
    save_checkpoint(path, CHECKPOINT, net.config.to_dict(), net.state_dict(), extra)


def load_property_model(name: str, device: torch.device | str = "cpu") -> PropertyModel:
    """A committed property model by name (``cgcnn-formation-energy``, ``cgcnn-band-gap``: a
    folder of ``data/models``) or by ``.pt`` path, rebuilt from its saved config (strict load).

    Raises:
        FileNotFoundError: no such model. ValueError: the file is not a property-model checkpoint.
    """
    recipe = PROPERTY_MODELS.get(name)
    command = (f"python -m ml train-property --target {recipe.model.target}" if recipe is not None
               else CHECKPOINT.command)
    model_name, path = resolve_model(name, train_command=command)
    device = torch.device(device)
    payload = load_checkpoint(path, CHECKPOINT, device, command)
    config = PropertyRegressorConfig(**payload["config"])
    net = PropertyRegressor(config, payload["state_dict"]["encoder.atom_feature_table"])
    net.load_state_dict(payload["state_dict"], strict=True)
    return PropertyModel(model_name, net.to(device).eval(), payload, device)


# --------------------------------------------------------------------------- training


@dataclass
class PropertyData:
    """Graphs with one target: ``rows`` into ``store`` and the target values (in its unit)."""

    store: GraphStore
    rows: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


def property_data(dataset: Dataset, target: str, split: str, shards=None, store: GraphStore | None = None) -> PropertyData:
    """The materials of ``split`` with a finite ``target`` among the graph shards ``shards``
    (or in ``store``, graphs of ``dataset`` already loaded).

    Raises:
        ValueError: the dataset has no such property column.
    """
    if target not in dataset.properties.columns:
        raise ValueError(f"dataset {dataset.name} has no property {target!r}")
    store = store or GraphStore(load_features(dataset, "graph", shards=shards))
    values = dataset.properties[target].reindex(store.material_ids).to_numpy(dtype=float)
    keep = np.flatnonzero(np.isfinite(values) & (assign_splits(store.material_ids) == split))
    return PropertyData(store, keep, values[keep].astype(np.float32))


def whole_test_split(dataset: Dataset, target: str) -> PropertyData:
    """The whole ``test`` split of ``dataset`` with the property (its own graph cache,
    ``<dataset>-test``, as :func:`ml.training.cmml.train` uses for the test retrieval)."""
    subset = dataset.split_subset("test")
    featurize(subset, "graph", processes=1, progress=False)
    return property_data(subset, target, "test")


def mean_absolute_error(model: PropertyModel, data: PropertyData) -> float:
    """MAE of ``model`` on ``data``, in the target's unit."""
    return float(np.mean(np.abs(model.predict_graphs(data.store, data.rows) - data.target)))


def fit_epoch(net: PropertyRegressor, optimiser: torch.optim.Optimizer, data: PropertyData, batch_size: int,
              seed: int, scheduler=None, desc: str | None = None) -> float:
    """One pass over ``data`` in random batches of ``batch_size`` (the last partial batch is
    dropped); L1 loss on the normalised target. Returns the mean loss (normalised units)."""
    device = next(net.parameters()).device
    net.train()
    order = np.random.default_rng(seed).permutation(len(data))
    n_steps = max(len(data) // batch_size, 1)
    targets = torch.from_numpy(data.target)
    total = 0.0
    for step in tqdm(range(n_steps), desc=desc, unit="batch", mininterval=30, disable=desc is None):
        chosen = order[step * batch_size : (step + 1) * batch_size]
        batch = data.store.batch(data.rows[chosen]).to(device)
        loss = torch.nn.functional.l1_loss(net(*batch.inputs()), net.normalise(targets[chosen].to(device)))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if scheduler is not None:
            scheduler.step()
        total += float(loss.detach())
    return total / n_steps


def train_property_model(dataset: Dataset, name: str, config: PropertyTrainConfig, run_dir: Path,
                         out_model: Path, resume: bool = False, device: torch.device | str = "cpu") -> dict:
    """Train (or resume) a property model; checkpoint every epoch into ``run_dir/last.pt``
    (with ``run_dir/log.csv``, :class:`~ml.training.loop.EpochLoop`).

    L1 loss on the normalised target, Adam with a cosine learning-rate decay. At the end the
    model is scored on the whole test split and written to ``out_model`` with a model card.

    Returns:
        ``{"history", "test_mae", "n_train", "n_val", "n_test"}`` (MAE in the target's unit).

    Raises:
        FileNotFoundError: ``resume`` without a checkpoint. ValueError: unknown target column, or
        fewer training materials than one batch.
    """
    device = torch.device(device)
    train, val = _train_and_val(dataset, config)
    torch.manual_seed(config.seed)
    net = PropertyRegressor(config.model, torch.from_numpy(atom_feature_table()),
                            float(train.target.mean()), float(train.target.std())).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    steps_per_epoch = len(train) // config.batch_size
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps_per_epoch * config.epochs)
    campaign = Campaign(run_dir)
    parts = {"state_dict": net, "optimiser": optimiser, "scheduler": scheduler}
    start, history, _ = run_resume(campaign, device, lambda state: None, parts) if resume else (0, [], {})
    run_dir.mkdir(parents=True, exist_ok=True)
    model = PropertyModel(name, net, {}, device)
    log.info("%s: training on %d materials, validating on %d", name, len(train), len(val))

    def fit(epoch: int) -> dict:
        began = time.time()
        loss = fit_epoch(net, optimiser, train, config.batch_size, config.seed + epoch, scheduler,
                         desc=f"{name} epoch {epoch + 1}/{config.epochs}")
        row = {"epoch": epoch + 1, "loss": loss, "val_mae": mean_absolute_error(model, val),
               "seconds": time.time() - began}
        log.info("%s epoch %d: train L1 %.4f (normalised), val MAE %.4f %s (%.0f s)", name, row["epoch"],
                 row["loss"], row["val_mae"], config.model.unit, row["seconds"])
        return row

    loop = EpochLoop(campaign, config.epochs, history=history)
    loop.run(start, fit, lambda: {key: part.state_dict() for key, part in parts.items()})
    test = whole_test_split(dataset, config.model.target)
    result = {"history": loop.history, "test_mae": mean_absolute_error(model, test), "n_train": len(train),
              "n_val": len(val), "n_test": len(test)}
    extra = {"train_config": asdict(config), "dataset": dataset.name, "name": name, **result}
    save_property_model(out_model, net, extra)
    write_property_model_card(out_model, extra)
    return result


def _train_and_val(dataset: Dataset, config: PropertyTrainConfig) -> tuple[PropertyData, PropertyData]:
    """The training and validation materials with the target in the recipe's graph shards
    (featurised first when missing).

    Raises:
        ValueError: unknown target column, or fewer training materials than one batch.
    """
    target = config.model.target
    shards = None
    if config.train_shards is not None and config.train_shards < n_shards_for(len(dataset)):
        shards = range(config.train_shards)
    featurize(dataset, "graph", shards=shards, processes=1)
    train = property_data(dataset, target, "train", shards)
    val = property_data(dataset, target, "val", store=train.store)
    if len(train) < config.batch_size:
        raise ValueError(f"only {len(train)} training materials with {target}; need at least one batch")
    return train, val


def configured(name: str, **overrides) -> PropertyTrainConfig:
    """The recipe of a committed model with the non-``None`` ``overrides`` applied."""
    return replace(PROPERTY_MODELS[name], **{k: v for k, v in overrides.items() if v is not None})
