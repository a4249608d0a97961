"""Crystal generation with the trained voxel VAE (Court et al., J. Chem. Inf. Model. 60, 4518, 2020):
latent vectors → density and coordinate channels (VAE decoder) → species per voxel (UNet) →
pymatgen ``Structure`` (watershed, :func:`ml.voxels.structure_from_voxels`) → validity and the
targeted-generation funnel.

The narrow API a CLI verb or a Dash page calls::

    generator = Generator.load()                         # data/models/vae-cpu, dataset mp2024
    crystals = generator.interpolate("mp-…", "mp-…", steps=10, progress=callback)
    crystals = generator.sample_around("mp-…", variance=0.5, n=1000, progress=callback)
    crystals = generator.sample(decile=3, n=1000)
    [c.record() for c in crystals]                       # plain dicts (CSV rows)
    write_generated(crystals, out_dir)                   # CIFs + generated.csv

``progress(done, total)`` is called after every decoded chunk. Unknown material ids, ids outside
the VAE's set and bad arguments raise :class:`GenerationError` (a ``ValueError``) with a message
fit for a user.

Validity (the paper's rule): the structure decodes and no two atoms lie closer than 0.5 Å.
The targeted funnel, each stage a subset of the one before (Court et al. 2020):
``valid`` → ``same_stoichiometry`` (the base's integer ratio, e.g. 1:1:3) → ``novel`` (reduced
formula not among the VAE's training crystals) → ``energy_within_20pct`` (CGCNN-predicted
formation energy within 20 % of the base's DFT value) → ``unique`` (first of its reduced formula).
Without a formation-energy predictor (``ml.property_model``) the funnel stops at ``novel``.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = "vae-cpu"
MIN_DISTANCE = 0.5  # Å, validity threshold of Court et al.
FUNNEL_STAGES = ("invalid", "valid", "same_stoichiometry", "novel", "energy_within_20pct", "unique")
PROPERTY_MODELS = {"formation_energy_per_atom": "cgcnn-formation-energy", "band_gap": "cgcnn-band-gap"}
CSV_COLUMNS = ["index", "file", "formula", "valid", "reason", "a", "b", "c", "n_sites", "decile", "t",
               "formation_energy_per_atom", "band_gap", "funnel_stage"]

Progress = Callable[[int, int], None] | None


class GenerationError(ValueError):
    """A generation request that cannot be served (unknown id, id outside the VAE set, bad value)."""


@dataclass
class GeneratedCrystal:
    """One decoded latent vector.

    Attributes:
        index: position in the request (0-based).
        structure: the decoded pymatgen ``Structure`` (``None`` when decoding failed).
        valid: decoded and all interatomic distances > 0.5 Å.
        reason: why it is not valid (``None`` when valid).
        lattice: ``(a, b, c)`` in Å read from the coordinate channels.
        decile: the formation-energy decile conditioned on (argmax of the condition).
        t: position on an interpolation line (0 = first material, 1 = second), else ``None``.
        formation_energy_per_atom: CGCNN prediction, eV/atom (``None``: no predictor / invalid).
        band_gap: CGCNN prediction, eV.
        funnel_stage: the last of :data:`FUNNEL_STAGES` it passed.
    """

    index: int
    structure: object | None
    valid: bool
    reason: str | None
    lattice: tuple[float, float, float]
    decile: int
    t: float | None = None
    formation_energy_per_atom: float | None = None
    band_gap: float | None = None
    funnel_stage: str = "invalid"

    @property
    def formula(self) -> str | None:
        """Reduced formula of the decoded structure."""
        return None if self.structure is None else self.structure.composition.reduced_formula

    def record(self) -> dict:
        """A plain dict (no pymatgen objects): the CSV row, lengths in Å, energies in eV/atom, gap in eV."""
        a, b, c = (round(float(v), 4) for v in self.lattice)
        return {"index": self.index, "file": f"{self.index:04d}.cif" if self.structure is not None else "",
                "formula": self.formula or "", "valid": self.valid, "reason": self.reason or "",
                "a": a, "b": b, "c": c, "n_sites": 0 if self.structure is None else len(self.structure),
                "decile": self.decile, "t": self.t, "formation_energy_per_atom": self.formation_energy_per_atom,
                "band_gap": self.band_gap, "funnel_stage": self.funnel_stage}


def vote_species(species: np.ndarray, density: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """One species per atom: the occupied voxels are split into atoms by a watershed of the
    density (markers at its local maxima above ``threshold``; the grid wrap-padded so atoms on the
    cell faces stay whole), and every atom's voxels take the most frequent species among them.

    A network's per-voxel species often mixes two elements inside one atom's blob; decoded as is,
    each part becomes an atom and the pair sits closer than 0.5 Å. Voxels no marker reaches keep
    their label.

    Shapes:
        species ``(N, N, N)`` int (0 empty), density ``(N, N, N)`` → ``(N, N, N)`` like ``species``.
    """
    from scipy import ndimage
    from skimage.segmentation import watershed

    mask = species > 0
    if not mask.any():
        return species
    pad = max(2, species.shape[0] // 8)
    d = np.pad(density, pad, mode="wrap")
    m = np.pad(mask, pad, mode="wrap")
    peaks = m & (d >= ndimage.maximum_filter(d, size=3)) & (d > threshold)
    markers, _ = ndimage.label(peaks)
    labels = watershed(-d, markers, mask=m)[pad:-pad, pad:-pad, pad:-pad]
    out = species.copy()
    flat_labels, flat_species = labels.ravel(), species.ravel().astype(np.int64)
    occupied = flat_labels > 0
    if not occupied.any():
        return out
    # majority species of every region at once: counts over (region, species) pairs
    _, region = np.unique(flat_labels[occupied], return_inverse=True)
    counts = np.zeros((region.max() + 1, int(flat_species.max()) + 1), dtype=np.int64)
    np.add.at(counts, (region, flat_species[occupied]), 1)
    winner = counts.argmax(axis=1)
    out.ravel()[np.flatnonzero(occupied)] = winner[region]
    return out


def _pick_device(device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_property_predictors() -> dict[str, object]:
    """The CGCNN predictors of :mod:`ml.property_model` that are trained, by property name
    (``formation_energy_per_atom``, ``band_gap``); empty when that module or its weights are absent."""
    try:
        from ml.property_model import load_property_model
    except ImportError:
        return {}
    found = {}
    for prop, name in PROPERTY_MODELS.items():
        try:
            found[prop] = load_property_model(name)
        except (FileNotFoundError, ValueError) as exc:
            log.info("no %s predictor (%s)", prop, exc)
    return found


class Generator:
    """A trained UNet + Cond-DFC-VAE pair with the VAE's voxel store (for encoding known materials).

    Build with :meth:`load`. Methods return lists of :class:`GeneratedCrystal`.
    """

    def __init__(self, vae, unet, voxel_config, arrays, selection, predictors: dict, device: torch.device,
                 dataset=None, chunk: int = 20, vote: bool = True) -> None:
        self.vae, self.unet, self.voxel_config = vae, unet, voxel_config
        self.dataset = dataset  # ml.datasets.Dataset the store was built from (ids, conventional cells)
        self.vote = vote  # one species per atom before decoding (:func:`vote_species`)
        self.dataset_ids = frozenset(dataset.material_ids) if dataset is not None else frozenset()
        self.arrays, self.selection, self.predictors, self.device, self.chunk = arrays, selection, predictors, device, chunk
        #: validation metrics saved with the checkpoints (``unet_nonzero_recall``, ``cell_length_mae`` Å), set by :meth:`load`
        self.validation: dict[str, float] = {}
        self._row = {m: i for i, m in enumerate(arrays.material_ids)}
        train = selection[selection["split"] == "train"]
        self.training_formulas = frozenset(train["formula"])

    # ------------------------------------------------------------------ construction

    @classmethod
    def load(cls, model_dir: str | Path | None = None, dataset="mp2024", device=None,
             predictors: dict | None = None) -> Generator:
        """Load ``unet.pt`` and ``vae.pt`` of ``model_dir`` (a folder, or a name under
        ``data/models``; default ``vae-cpu``) and the voxel store of ``dataset``.

        Args:
            dataset: a registry name, or an ``ml.datasets.Dataset`` (a subset, as in tests).
            predictors: property name → object with ``predict(structures) -> (n,)``; default
                :func:`load_property_predictors`.

        Raises:
            FileNotFoundError: no trained generator there. ml.vae_data.VAEDataError: the
            dataset's voxel store is not built.
        """
        from ml.datasets import get_dataset
        from ml.models.vae3d import load_voxel_model
        from ml.settings import get_settings
        from ml.vae_data import load_voxel_arrays, select_vae_materials
        from ml.voxels import VoxelConfig

        folder = Path(model_dir) if model_dir is not None and Path(model_dir).is_dir() else \
            get_settings().models_dir / (model_dir or DEFAULT_MODEL_DIR)
        if not (folder / "vae.pt").is_file() or not (folder / "unet.pt").is_file():
            raise FileNotFoundError(f"no trained generator in {folder} (needs unet.pt and vae.pt; "
                                    "train with: python -m ml train-vae --config cpu)")
        device = _pick_device(device)
        vae, payload = load_voxel_model(folder / "vae.pt", "cond-dfc-vae", device)
        unet, unet_payload = load_voxel_model(folder / "unet.pt", "unet3d", device)
        # fields added to VoxelConfig after training (decoding options) take their defaults
        known = {f.name for f in fields(VoxelConfig)}
        voxel_config = VoxelConfig(**{k: v for k, v in payload["voxel_config"].items() if k in known})
        data = get_dataset(dataset) if isinstance(dataset, str) else dataset
        arrays = load_voxel_arrays(data, voxel_config=voxel_config)
        selection = select_vae_materials(data, progress=False)
        predictors = load_property_predictors() if predictors is None else predictors
        loaded = cls(vae, unet, voxel_config, arrays, selection, predictors, device, data)
        unet_val, vae_val = unet_payload.get("val_metrics") or {}, payload.get("val_metrics") or {}
        loaded.validation = {k: float(v) for k, v in (("unet_nonzero_recall", unet_val.get("nonzero_recall")),
                                                      ("cell_length_mae", vae_val.get("cell_length_mae"))) if v is not None}
        return loaded

    # ------------------------------------------------------------------ encoding

    def row_of(self, material_id: str) -> int:
        """Row of a material in the voxel store.

        Raises:
            GenerationError: an id unknown to the dataset, or one outside the VAE's set.
        """
        material_id = str(material_id).strip()
        if material_id in self._row:
            return self._row[material_id]
        if material_id in self.dataset_ids:
            raise GenerationError(f"{material_id} is not in the VAE's set (cubic AB alloys, ABX3 perovskites, "
                                  "Heusler and half-Heusler compounds with at most 40 sites)")
        raise GenerationError(f"unknown material id {material_id!r}")

    @torch.inference_mode()
    def encode(self, material_id: str) -> tuple[torch.Tensor, torch.Tensor, int]:
        """μ, log σ² ``(latent_dim,)`` of a known material and its decile (conditioned on it)."""
        from ml.vae_train import voxel_batch

        row = self.row_of(material_id)
        batch = voxel_batch(self.arrays, np.array([row]), self.device)
        mu, logvar = self.vae.encode(batch.x, batch.condition)
        return mu[0], logvar[0], int(batch.decile[0])

    # ------------------------------------------------------------------ decoding

    @torch.inference_mode()
    def decode(self, z: torch.Tensor, condition: torch.Tensor, progress: Progress = None,
               t: list[float] | None = None) -> list[GeneratedCrystal]:
        """Decode latent vectors into crystals (validity checked, properties predicted).

        Shapes:
            z ``(n, latent_dim)``; condition ``(n, 10)`` (one-hot, or a mix on interpolation lines).
        """
        from ml.models.unet3d import predict_species
        from ml.voxels import (
            VoxelDecodeError,
            is_valid_structure,
            lattice_from_coordinates,
            structure_from_voxels,
        )

        self.vae.eval()
        self.unet.eval()
        out: list[GeneratedCrystal] = []
        n = len(z)
        for start in range(0, n, self.chunk):
            zc = z[start : start + self.chunk].to(self.device)
            cc = condition[start : start + self.chunk].to(self.device)
            x = self.vae.decode(zc, cc)
            species = predict_species(self.unet(x[:, :1])).cpu().numpy()
            density = x[:, 0].float().cpu().numpy()
            lattice = lattice_from_coordinates(x[:, 1:].float().cpu().numpy(), self.voxel_config)
            deciles = cc.argmax(dim=1).cpu().numpy()
            for i in range(len(zc)):
                index = start + i
                structure, reason = None, None
                try:
                    grid = vote_species(species[i], density[i], self.voxel_config.peak_threshold) if self.vote \
                        else species[i]
                    structure = structure_from_voxels(grid, lattice[i], density[i], self.voxel_config)
                    if not is_valid_structure(structure, MIN_DISTANCE):
                        reason = f"atoms closer than {MIN_DISTANCE} Å"
                except (VoxelDecodeError, ValueError) as exc:  # pymatgen's own ValueErrors on odd cells too
                    structure, reason = None, str(exc) or type(exc).__name__
                out.append(GeneratedCrystal(index=index, structure=structure, valid=reason is None, reason=reason,
                                            lattice=tuple(float(v) for v in lattice[i]), decile=int(deciles[i]),
                                            t=None if t is None else float(t[index]),
                                            funnel_stage="valid" if reason is None else "invalid"))
            if progress is not None:
                progress(min(start + self.chunk, n), n)
        self._predict(out)
        return out

    def _predict(self, crystals: list[GeneratedCrystal]) -> None:
        valid = [c for c in crystals if c.valid]
        if not valid:
            return
        for prop, model in self.predictors.items():
            values = np.asarray(model.predict([c.structure for c in valid]), dtype=float)
            for crystal, value in zip(valid, values):
                setattr(crystal, prop, round(float(value), 4))

    def _condition(self, deciles) -> torch.Tensor:
        from ml.models.vae3d import one_hot_decile

        try:
            return one_hot_decile(torch.as_tensor(np.asarray(deciles, dtype=np.int64)), self.vae.config.n_conditions)
        except ValueError as exc:
            raise GenerationError(str(exc)) from None

    # ------------------------------------------------------------------ the three modes

    def reconstruct(self, material_ids: list[str], progress: Progress = None) -> list[GeneratedCrystal]:
        """Decode the posterior means μ of known materials (each with its own decile)."""
        encoded = [self.encode(m) for m in material_ids]
        if not encoded:
            return []
        z = torch.stack([e[0] for e in encoded])
        return self.decode(z, self._condition([e[2] for e in encoded]), progress)

    def sample(self, decile: int, n: int, seed: int = 0, progress: Progress = None) -> list[GeneratedCrystal]:
        """Random generation: z ~ N(0, I) with a chosen formation-energy decile (0 = most stable).

        Raises:
            GenerationError: ``n`` < 1 or a decile outside 0–9.
        """
        _check_count(n)
        condition = self._condition([decile] * n)
        z = torch.randn(n, self.vae.config.latent_dim, generator=torch.Generator().manual_seed(seed))
        return self.decode(z, condition, progress)

    def sample_around(self, material_id: str, variance: float, n: int, decile: int | None = None, seed: int = 0,
                      progress: Progress = None) -> list[GeneratedCrystal]:
        """Targeted generation: z ~ N(μ_base, variance · I) around a known material, then the funnel.

        Args:
            variance: of each latent coordinate (the paper's 0.5; the standard deviation is √variance).
            decile: condition; default the base's own decile.

        Raises:
            GenerationError: unknown id, id outside the VAE's set, ``variance`` ≤ 0, ``n`` < 1.
        """
        _check_count(n)
        if not (isinstance(variance, (int, float)) and math.isfinite(variance) and variance > 0):
            raise GenerationError(f"variance must be a positive number, got {variance!r}")
        mu, _, own = self.encode(material_id)
        noise = torch.randn(n, len(mu), generator=torch.Generator().manual_seed(seed))
        z = mu.cpu()[None] + math.sqrt(variance) * noise
        crystals = self.decode(z, self._condition([own if decile is None else decile] * n), progress)
        self.apply_funnel(crystals, material_id)
        return crystals

    def interpolate(self, id_a: str, id_b: str, steps: int = 10, progress: Progress = None) -> list[GeneratedCrystal]:
        """Decode ``steps`` points on the straight line from μ_a to μ_b (both ends included);
        the condition moves linearly from a's one-hot decile to b's.

        Raises:
            GenerationError: an unknown id or one outside the VAE's set, ``steps`` < 2.
        """
        if not isinstance(steps, int) or steps < 2 or steps > 1000:
            raise GenerationError(f"steps must be an integer from 2 to 1000, got {steps!r}")
        mu_a, _, dec_a = self.encode(id_a)
        mu_b, _, dec_b = self.encode(id_b)
        t = torch.linspace(0, 1, steps)
        z = (1 - t)[:, None] * mu_a.cpu()[None] + t[:, None] * mu_b.cpu()[None]
        ca, cb = self._condition([dec_a]), self._condition([dec_b])
        condition = (1 - t)[:, None] * ca + t[:, None] * cb
        return self.decode(z, condition, progress, t=t.tolist())

    # ------------------------------------------------------------------ funnel

    def apply_funnel(self, crystals: list[GeneratedCrystal], base_id: str) -> dict[str, int | None]:
        """Set each crystal's ``funnel_stage`` relative to a base material; return the counts
        (:func:`funnel_counts`)."""
        from ml.vae_data import stoichiometry

        base = self.selection.set_index("material_id").loc[base_id]
        ratio = stoichiometry(base["formula"])
        base_energy = float(base["formation_energy_per_atom"])
        can_check_energy = "formation_energy_per_atom" in self.predictors
        seen: set[str] = set()
        for crystal in crystals:
            if not crystal.valid:
                crystal.funnel_stage = "invalid"
                continue
            stage = "valid"
            if stoichiometry(crystal.structure.composition) == ratio:
                stage = "same_stoichiometry"
                if crystal.formula not in self.training_formulas:
                    stage = "novel"
                    energy = crystal.formation_energy_per_atom
                    if can_check_energy and energy is not None and abs(energy - base_energy) <= 0.2 * abs(base_energy):
                        stage = "energy_within_20pct"
                        if crystal.formula not in seen:
                            seen.add(crystal.formula)
                            stage = "unique"
            crystal.funnel_stage = stage
        return funnel_counts(crystals, energy_checked=can_check_energy)


def _check_count(n) -> None:
    if not isinstance(n, int) or n < 1 or n > 100_000:
        raise GenerationError(f"n must be an integer from 1 to 100000, got {n!r}")


def funnel_counts(crystals: list[GeneratedCrystal], energy_checked: bool = True) -> dict[str, int | None]:
    """How many crystals reached each stage of the funnel (cumulative): ``{"generated": n,
    "valid": …, "same_stoichiometry": …, "novel": …, "energy_within_20pct": …, "unique": …}``;
    the last two are ``None`` when no formation-energy predictor was available."""
    rank = {s: i for i, s in enumerate(FUNNEL_STAGES)}
    counts: dict[str, int | None] = {"generated": len(crystals)}
    for stage in FUNNEL_STAGES[1:]:
        counts[stage] = sum(rank[c.funnel_stage] >= rank[stage] for c in crystals)
    if not energy_checked:
        counts["energy_within_20pct"] = counts["unique"] = None
    return counts


def write_generated(crystals: list[GeneratedCrystal], out_dir: str | Path) -> Path:
    """Write ``<index>.cif`` for every decoded structure and ``generated.csv`` (one row per
    crystal, :data:`CSV_COLUMNS`) into ``out_dir``; returns the CSV path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for crystal in crystals:
        if crystal.structure is not None:
            crystal.structure.to(filename=str(out_dir / f"{crystal.index:04d}.cif"), fmt="cif")
    path = out_dir / "generated.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(c.record() for c in crystals)
    return path


