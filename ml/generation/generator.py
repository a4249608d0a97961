"""Crystal generation with the trained voxel VAE (after Court et al., J. Chem. Inf. Model. 60, 4518,
2020): latent vectors → density, per-voxel element log-probabilities and cell length (VAE decoder,
:mod:`ml.models.vae3d`) → pymatgen ``Structure`` (:func:`ml.generation.decode.decode_crystal`) → validity
(:mod:`ml.evaluation.validity`) and the targeted-generation funnel.

The narrow API a CLI verb or a Dash page calls::

    generator = Generator.load()                         # data/models/vae-cpu, dataset mp2024
    crystals = generator.interpolate("mp-…", "mp-…", steps=10, progress=callback)
    crystals = generator.sample_around("mp-…", variance=0.5, n=1000, progress=callback)
    crystals = generator.sample(decile=3, n=1000)        # latent prior: the fitted mixture, else N(0, I)
    [c.record() for c in crystals]                       # plain dicts (CSV rows)
    write_generated(crystals, out_dir)                   # CIFs + generated.csv

``progress(done, total)`` is called after every decoded chunk. Unknown material ids, ids outside
the VAE's set and bad arguments raise :class:`GenerationError` (a ``ValueError``) with a message
fit for a user.

Validity: ``valid`` is the strict rule of :func:`ml.evaluation.validity.strict_validity` (parses, 2–40 sites,
distances > 0.5 Å, a cubic space group, a family's formula shape); ``valid_paper`` is Court et
al.'s (distances > 0.5 Å). The targeted funnel, each stage a subset of the one before (Court et
al. 2020): ``valid`` (strict) → ``same_stoichiometry`` (the base's integer ratio, e.g. 1:1:3) →
``novel`` (reduced formula not among the VAE's training crystals) → ``energy_within_20pct``
(CGCNN-predicted formation energy within 20 % of the base's DFT value) → ``unique`` (first of
its reduced formula). Without a formation-energy predictor (``ml.training.property``) the funnel
stops at ``novel``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

from ml.generation.decode import CANDIDATE_THRESHOLD

PRIOR_FILE = "latent_prior.npz"
#: the evaluation report kept beside the weights (``ml.training.model_card.REPORT_FILE``)
REPORT_FILE = "metrics.json"
FUNNEL_STAGES = ("invalid", "valid", "same_stoichiometry", "novel", "energy_within_20pct", "unique")
PROPERTY_MODELS = {"formation_energy_per_atom": "cgcnn-formation-energy", "band_gap": "cgcnn-band-gap"}
CSV_COLUMNS = ["index", "file", "formula", "valid", "valid_paper", "reason", "spacegroup_number", "a", "b", "c",
               "n_sites", "decile", "t", "formation_energy_per_atom", "band_gap", "funnel_stage"]

Progress = Callable[[int, int], None] | None


class GenerationError(ValueError):
    """A generation request that cannot be served (unknown id, id outside the VAE set, bad value)."""


@dataclass
class GeneratedCrystal:
    """One decoded latent vector.

    Attributes:
        index: position in the request (0-based).
        structure: the decoded pymatgen ``Structure`` (``None`` when decoding failed).
        valid: passes the strict rule (:func:`ml.evaluation.validity.strict_validity`).
        reason: the first strict rule it breaks (``None`` when valid).
        lattice: ``(a, b, c)`` in Å (a cubic cell: three equal lengths).
        decile: the formation-energy decile conditioned on (argmax of the condition).
        valid_paper: passes Court et al.'s rule (decoded, all distances > 0.5 Å).
        spacegroup_number: found by spglib at 0.1 Å (``None`` when not reached).
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
    valid_paper: bool = False
    spacegroup_number: int | None = None
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
                "formula": self.formula or "", "valid": self.valid, "valid_paper": self.valid_paper,
                "reason": self.reason or "", "spacegroup_number": self.spacegroup_number,
                "a": a, "b": b, "c": c, "n_sites": 0 if self.structure is None else len(self.structure),
                "decile": self.decile, "t": self.t, "formation_energy_per_atom": self.formation_energy_per_atom,
                "band_gap": self.band_gap, "funnel_stage": self.funnel_stage}


def _pick_device(device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_property_predictors() -> dict[str, object]:
    """The CGCNN predictors of :mod:`ml.training.property` that are trained, by property name
    (``formation_energy_per_atom``, ``band_gap``); empty when that module or its weights are absent."""
    try:
        from ml.training.property import load_property_model
    except ImportError:
        return {}
    found = {}
    for prop, name in PROPERTY_MODELS.items():
        try:
            found[prop] = load_property_model(name)
        except (FileNotFoundError, ValueError) as exc:
            log.info("no %s predictor (%s)", prop, exc)
    return found


def model_folder(model_dir: str | Path | None = None) -> Path:
    """The generator folder: ``model_dir`` when it is a folder, else ``data/models/<model_dir or vae-cpu>``."""
    from ml.settings import get_settings

    if model_dir is not None and Path(model_dir).is_dir():
        return Path(model_dir)
    return get_settings().models_dir / (str(model_dir) if model_dir else get_settings().generator_model)


class Generator:
    """A trained :class:`ml.models.vae3d.CondVAE3D` with the VAE's voxel store (for encoding
    known materials) and, when fitted, the latent prior of random generation.

    Build with :meth:`load`. Methods return lists of :class:`GeneratedCrystal`.
    """

    def __init__(self, vae, vocabulary: list[int], arrays, selection, predictors: dict, device: torch.device,
                 dataset=None, prior=None, chunk: int = 32) -> None:
        from ml.training.vae import class_lookup

        self.vae, self.vocabulary = vae, list(vocabulary)
        self.lookup = class_lookup(self.vocabulary)
        self.dataset = dataset  # ml.data.datasets.Dataset the store was built from (ids, conventional cells)
        self.dataset_ids = frozenset(dataset.material_ids) if dataset is not None else frozenset()
        self.arrays, self.selection, self.predictors, self.device, self.chunk = arrays, selection, predictors, device, chunk
        #: smallest decoded density of a candidate atom (the decoded site count picks the atoms
        #: among them; :data:`ml.generation.decode.CANDIDATE_THRESHOLD`)
        self.peak_threshold = CANDIDATE_THRESHOLD
        #: :class:`ml.generation.latent_prior.LatentPrior` of random generation (``None``: N(0, I) only)
        self.prior = prior
        #: the evaluation of ``python -m ml evaluate-vae`` (``metrics.json``: gates, ``usable``), ``None`` when absent
        self.report: dict | None = None
        #: validation figures saved with the checkpoint (``species_voxel_accuracy``, ``cell_length_mae`` Å), set by :meth:`load`
        self.validation: dict[str, float] = {}
        self._row = {m: i for i, m in enumerate(arrays.material_ids)}
        train = selection[selection["split"] == "train"]
        self.training_formulas = frozenset(train["formula"])

    # ------------------------------------------------------------------ construction

    @classmethod
    def load(cls, model_dir: str | Path | None = None, dataset="mp2024", device=None,
             predictors: dict | None = None) -> Generator:
        """Load ``vae.pt`` (and ``latent_prior.npz`` when present) of ``model_dir`` (a folder, or a
        name under ``data/models``; default ``vae-cpu``) and the voxel store of ``dataset``.

        Args:
            dataset: a registry name, or an ``ml.data.datasets.Dataset`` (a subset, as in tests).
            predictors: property name → object with ``predict(structures) -> (n,)``; default
                :func:`load_property_predictors`.

        Raises:
            FileNotFoundError: no trained generator there. ValueError: a checkpoint of another
            format. ml.generation.voxel_data.VAEDataError: the dataset's voxel store is not built.
        """
        from ml.data.datasets import get_dataset
        from ml.generation.latent_prior import LatentPrior
        from ml.models.vae3d import load_voxel_model
        from ml.generation.voxel_arrays import load_voxel_arrays
        from ml.generation.voxel_data import select_vae_materials
        from ml.generation.voxels import VoxelConfig

        folder = model_folder(model_dir)
        if not (folder / "vae.pt").is_file():
            raise FileNotFoundError(f"no trained generator in {folder} (needs vae.pt; "
                                    "train with: python -m ml train-vae --config cpu)")
        device = _pick_device(device)
        vae, payload = load_voxel_model(folder / "vae.pt", device)
        voxel_config = VoxelConfig(**payload["voxel_config"])
        data = get_dataset(dataset) if isinstance(dataset, str) else dataset
        arrays = load_voxel_arrays(data, voxel_config=voxel_config)
        selection = select_vae_materials(data, progress=False)
        predictors = load_property_predictors() if predictors is None else predictors
        prior = LatentPrior.load(folder / PRIOR_FILE) if (folder / PRIOR_FILE).is_file() else None
        loaded = cls(vae, payload["vocabulary"], arrays, selection, predictors, device, data, prior)
        loaded.validation = {k: float(v) for k, v in (payload.get("val_metrics") or {}).items()}
        if (folder / REPORT_FILE).is_file():
            loaded.report = json.loads((folder / REPORT_FILE).read_text())
        return loaded

    def fit_prior(self, n_components: int = 8, seed: int = 0):
        """Fit :class:`ml.generation.latent_prior.LatentPrior` to the training crystals' μ (per decile) and use it."""
        from ml.generation.latent_prior import LatentPrior

        rows = np.flatnonzero(self.arrays.split == "train")
        mu = self.encode_rows(rows)[0].cpu().numpy()
        self.prior = LatentPrior.fit(mu, np.asarray(self.arrays.decile[rows]), self.vae.config.n_conditions,
                                     n_components, seed)
        return self.prior

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
    def encode_rows(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """μ and log σ² ``(n, latent_dim)`` of voxel-store rows, and their deciles ``(n,)``."""
        from ml.training.vae import voxel_batch

        self.vae.eval()
        mus, logvars = [], []
        for start in range(0, len(rows), 64):
            batch = voxel_batch(self.arrays, rows[start : start + 64], self.lookup, self.device)
            mu, logvar = self.vae.encode(batch.density, batch.species, batch.lattice, batch.condition)
            mus.append(mu)
            logvars.append(logvar)
        return torch.cat(mus), torch.cat(logvars), np.asarray(self.arrays.decile[rows], dtype=np.int64)

    def encode(self, material_id: str) -> tuple[torch.Tensor, torch.Tensor, int]:
        """μ, log σ² ``(latent_dim,)`` of a known material and its decile (conditioned on it)."""
        mu, logvar, decile = self.encode_rows(np.array([self.row_of(material_id)]))
        return mu[0], logvar[0], int(decile[0])

    # ------------------------------------------------------------------ decoding

    @torch.inference_mode()
    def decode(self, z: torch.Tensor, condition: torch.Tensor, progress: Progress = None,
               t: list[float] | None = None) -> list[GeneratedCrystal]:
        """Decode latent vectors into crystals (validity checked, properties predicted).

        Shapes:
            z ``(n, latent_dim)``; condition ``(n, 10)`` (one-hot, or a mix on interpolation lines).
        """
        from ml.generation.decode import decode_crystal
        from ml.evaluation.validity import strict_validity
        from ml.generation.voxels import VoxelDecodeError

        self.vae.eval()
        out: list[GeneratedCrystal] = []
        n = len(z)
        for start in range(0, n, self.chunk):
            zc = z[start : start + self.chunk].to(self.device)
            cc = condition[start : start + self.chunk].to(self.device)
            density, logits, lattice, n_sites = self.vae.decode(zc, cc)
            density = density[:, 0].float().cpu().numpy()
            log_probs = torch.log_softmax(logits.float(), dim=1).cpu().numpy()
            lattice = lattice.float().cpu().numpy()
            n_sites = n_sites.cpu().numpy()
            deciles = cc.argmax(dim=1).cpu().numpy()
            for i in range(len(zc)):
                index = start + i
                try:
                    structure = decode_crystal(density[i], log_probs[i], float(lattice[i]), self.vocabulary,
                                               self.peak_threshold, n_sites=int(n_sites[i]))
                except (VoxelDecodeError, ValueError) as exc:  # pymatgen's own ValueErrors on odd cells too
                    structure, failure = None, str(exc) or type(exc).__name__
                else:
                    failure = None
                verdict = strict_validity(structure)
                a = float(lattice[i])
                out.append(GeneratedCrystal(index=index, structure=structure, valid=verdict.strict,
                                            reason=failure or verdict.reason, lattice=(a, a, a),
                                            decile=int(deciles[i]), valid_paper=verdict.paper,
                                            spacegroup_number=verdict.spacegroup_number,
                                            t=None if t is None else float(t[index]),
                                            funnel_stage="valid" if verdict.strict else "invalid"))
            if progress is not None:
                progress(min(start + self.chunk, n), n)
        self._predict(out)
        return out

    def _predict(self, crystals: list[GeneratedCrystal]) -> None:
        """CGCNN properties of the valid crystals; a crystal the predictor cannot featurise (for
        example a decoded cell far denser than any crystal) keeps ``None``."""
        from ml.features.errors import FeaturisationError

        valid = [c for c in crystals if c.valid]
        if not valid:
            return
        for prop, model in self.predictors.items():
            try:
                values = list(np.asarray(model.predict([c.structure for c in valid]), dtype=float))
            except FeaturisationError:  # one at a time, to keep the others' predictions
                values = []
                for crystal in valid:
                    try:
                        values.append(float(model.predict([crystal.structure])[0]))
                    except FeaturisationError as exc:
                        log.info("no %s prediction for %s: %s", prop, crystal.formula, exc)
                        values.append(None)
            for crystal, value in zip(valid, values):
                setattr(crystal, prop, None if value is None else round(float(value), 4))

    def _condition(self, deciles) -> torch.Tensor:
        from ml.models.vae3d import one_hot_decile

        try:
            return one_hot_decile(torch.as_tensor(np.asarray(deciles, dtype=np.int64)), self.vae.config.n_conditions)
        except ValueError as exc:
            raise GenerationError(str(exc)) from None

    # ------------------------------------------------------------------ the three modes

    def reconstruct(self, material_ids: list[str], progress: Progress = None) -> list[GeneratedCrystal]:
        """Decode the posterior means μ of known materials (each with its own decile)."""
        rows = np.array([self.row_of(m) for m in material_ids], dtype=np.int64)
        if not len(rows):
            return []
        mu, _, deciles = self.encode_rows(rows)
        return self.decode(mu, self._condition(deciles), progress)

    def sample(self, decile: int, n: int, seed: int = 0, progress: Progress = None,
               prior: str | None = None) -> list[GeneratedCrystal]:
        """Random generation with a chosen formation-energy decile (0 = most stable).

        Args:
            prior: ``"fitted"`` (the mixture fitted to the training crystals' μ of that decile,
                :mod:`ml.generation.latent_prior`; the default when the model has one) or ``"normal"``
                (z ~ N(0, I), the paper's).

        Raises:
            GenerationError: ``n`` < 1, a decile outside 0–9, an unknown prior, or ``"fitted"``
            for a model without one.
        """
        from ml.generation.latent_prior import PRIORS

        _check_count(n)
        condition = self._condition([decile] * n)
        prior = prior or ("fitted" if self.prior is not None else "normal")
        if prior not in PRIORS:
            raise GenerationError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}")
        if prior == "fitted":
            if self.prior is None:
                raise GenerationError(f"this model has no fitted latent prior ({PRIOR_FILE}); use prior 'normal'")
            z = torch.from_numpy(self.prior.sample(int(decile), n, np.random.default_rng(seed)))
        else:
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
        mu, _, deciles = self.encode_rows(np.array([self.row_of(id_a), self.row_of(id_b)]))
        t = torch.linspace(0, 1, steps)
        z = (1 - t)[:, None] * mu[0].cpu()[None] + t[:, None] * mu[1].cpu()[None]
        ca, cb = self._condition([deciles[0]]), self._condition([deciles[1]])
        condition = (1 - t)[:, None] * ca + t[:, None] * cb
        return self.decode(z, condition, progress, t=t.tolist())

    # ------------------------------------------------------------------ funnel

    def apply_funnel(self, crystals: list[GeneratedCrystal], base_id: str) -> dict[str, int | None]:
        """Set each crystal's ``funnel_stage`` relative to a base material; return the counts
        (:func:`funnel_counts`)."""
        from ml.generation.voxel_data import stoichiometry

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


def fit_latent_prior(model_dir: str | Path | None = None, dataset="mp2024", n_components: int = 8) -> Path:
    """Fit the latent prior of random generation (:mod:`ml.generation.latent_prior`) to a trained
    generator's training crystals and save it as ``latent_prior.npz`` beside ``vae.pt``."""
    generator = Generator.load(model_dir, dataset, predictors={})
    path = model_folder(model_dir) / PRIOR_FILE
    generator.fit_prior(n_components).save(path)
    return path


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


