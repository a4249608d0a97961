"""Court et al.'s generative model (J. Chem. Inf. Model. 60, 4518, 2020) as the app and the CLI use
it: latent vectors → density, per-voxel element log-probabilities and cell length (VAE decoder,
:mod:`ml.models.vae3d`) → pymatgen ``Structure`` (:func:`ml.generation.decode.decode_crystal`) →
validity (:mod:`ml.evaluation.validity`) → CGCNN properties.

The narrow API a CLI verb or a Dash page calls::

    model = GenerativeModel.load()                       # data/models/vae-cpu, dataset mp2024
    crystals = model.interpolate("mp-…", "mp-…", steps=10, progress=callback)
    crystals = model.sample_around("mp-…", variance=0.5, n=1000, progress=callback)
    crystals = model.sample(decile=3, n=1000)            # latent prior: the fitted mixture, else N(0, I)
    [c.record() for c in crystals]                       # plain dicts (CSV rows)
    write_generated(crystals, out_dir)                   # CIFs + generated.csv

The three modes are in :mod:`ml.generation.sampling`, the targeted funnel in
:mod:`ml.generation.funnel`, what they return in :mod:`ml.generation.records`.
``progress(done, total)`` is called after every decoded chunk. Unknown material ids, ids outside
the VAE's set and bad arguments raise :class:`ml.generation.records.GenerationError` (a
``ValueError``) with a message fit for a user.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ml.generation.decode import CANDIDATE_THRESHOLD
from ml.generation.funnel import assign_funnel_stages
from ml.generation.latent_prior import PRIOR_FILE
from ml.generation.records import GeneratedCrystal, GenerationError, Progress
from ml.generation.sampling import interpolated_crystals, random_crystals, targeted_crystals
from ml.training.model_card import REPORT_FILE  # the evaluation report kept beside the weights

log = logging.getLogger(__name__)

PROPERTY_MODELS = {"formation_energy_per_atom": "cgcnn-formation-energy", "band_gap": "cgcnn-band-gap"}


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
    """The generative model's folder: ``model_dir`` when it is a folder, else ``data/models/<model_dir or vae-cpu>``."""
    from ml.settings import get_settings

    if model_dir is not None and Path(model_dir).is_dir():
        return Path(model_dir)
    return get_settings().models_dir / (str(model_dir) if model_dir else get_settings().generator_model)


class GenerativeModel:
    """Court et al.'s generative model: a trained :class:`ml.models.vae3d.CondVAE3D` with the VAE's
    voxel store (for encoding known materials) and, when fitted, the latent prior of random
    generation.

    Build with :meth:`load`. Methods return lists of :class:`GeneratedCrystal`.
    """

    def __init__(self, vae, vocabulary: list[int], arrays, selection, predictors: dict, device: torch.device,
                 dataset=None, prior=None, chunk: int = 32) -> None:
        from ml.training.vae import class_lookup

        self.vae, self.vocabulary = vae, list(vocabulary)
        self.lookup = class_lookup(self.vocabulary)
        self.dataset = dataset  # the store's dataset: its name, or the ml.data.datasets.Dataset
        # every id of the dataset, to tell "outside the VAE's set" from "unknown"; None when only the
        # name is known (a published store: the ids would come from the mirror)
        self.dataset_ids = (frozenset(dataset.material_ids) if dataset is not None and not isinstance(dataset, str)
                            else None)
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
             predictors: dict | None = None) -> GenerativeModel:
        """Load ``vae.pt`` (and ``latent_prior.npz`` when present) of ``model_dir`` (a folder, or a
        name under ``data/models``; default ``vae-cpu``) and the voxel store of ``dataset``.

        Args:
            dataset: a dataset name: the voxel store the build published among the artifacts
                (:func:`ml.generation.voxel_arrays.published_store`; neither the mirror nor the
                cache is read), or an ``ml.data.datasets.Dataset`` (its cached store; a subset,
                as in tests).
            predictors: property name → object with ``predict(structures) -> (n,)``; default
                :func:`load_property_predictors`.

        Raises:
            FileNotFoundError: no trained generator there. ValueError: a checkpoint of another
            format. ml.generation.voxel_data.VAEDataError: the dataset's voxel store is not built.
        """
        from ml.generation.latent_prior import LatentPrior
        from ml.models.vae3d import load_voxel_model
        from ml.generation.voxel_arrays import load_voxel_arrays, published_store
        from ml.generation.voxel_data import select_vae_materials
        from ml.generation.voxels import VoxelConfig

        folder = model_folder(model_dir)
        if not (folder / "vae.pt").is_file():
            raise FileNotFoundError(f"no trained generator in {folder} (needs vae.pt; "
                                    "train with: python -m ml train-vae --config cpu)")
        device = _pick_device(device)
        vae, payload = load_voxel_model(folder / "vae.pt", device)
        voxel_config = VoxelConfig(**payload["voxel_config"])
        arrays = load_voxel_arrays(dataset, voxel_config=voxel_config)
        if isinstance(dataset, str):  # the store the build published: no mirror, no cache read
            selection = pd.read_parquet(published_store(dataset, voxel_config) / "selection.parquet")
        else:
            selection = select_vae_materials(dataset, progress=False)
        predictors = load_property_predictors() if predictors is None else predictors
        prior = LatentPrior.load(folder / PRIOR_FILE) if (folder / PRIOR_FILE).is_file() else None
        loaded = cls(vae, payload["vocabulary"], arrays, selection, predictors, device, dataset, prior)
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
        outside = ("the VAE's set (cubic AB alloys, ABX3 perovskites, Heusler and half-Heusler compounds with at "
                   "most 40 sites)")
        if self.dataset_ids is None:
            raise GenerationError(f"{material_id!r} is not in {outside}")
        if material_id in self.dataset_ids:
            raise GenerationError(f"{material_id} is not in {outside}")
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

    def condition(self, deciles) -> torch.Tensor:
        """``(n, 10)`` one-hot conditions of ``n`` deciles (:class:`GenerationError` outside 0–9)."""
        from ml.models.vae3d import one_hot_decile

        try:
            return one_hot_decile(torch.as_tensor(np.asarray(deciles, dtype=np.int64)), self.vae.config.n_conditions)
        except ValueError as exc:
            raise GenerationError(str(exc)) from None

    # ------------------------------------------------------------------ Court et al.'s modes

    def reconstruct(self, material_ids: list[str], progress: Progress = None) -> list[GeneratedCrystal]:
        """Decode the posterior means μ of known materials (each with its own decile)."""
        rows = np.array([self.row_of(m) for m in material_ids], dtype=np.int64)
        if not len(rows):
            return []
        mu, _, deciles = self.encode_rows(rows)
        return self.decode(mu, self.condition(deciles), progress)

    def sample(self, decile: int, n: int, seed: int = 0, progress: Progress = None,
               prior: str | None = None) -> list[GeneratedCrystal]:
        """Random generation: :func:`ml.generation.sampling.random_crystals`."""
        return random_crystals(self, decile, n, seed, progress, prior)

    def sample_around(self, material_id: str, variance: float, n: int, decile: int | None = None, seed: int = 0,
                      progress: Progress = None) -> list[GeneratedCrystal]:
        """Targeted generation: :func:`ml.generation.sampling.targeted_crystals`."""
        return targeted_crystals(self, material_id, variance, n, decile, seed, progress)

    def interpolate(self, id_a: str, id_b: str, steps: int = 10, progress: Progress = None) -> list[GeneratedCrystal]:
        """Interpolation: :func:`ml.generation.sampling.interpolated_crystals`."""
        return interpolated_crystals(self, id_a, id_b, steps, progress)

    def apply_funnel(self, crystals: list[GeneratedCrystal], base_id: str) -> dict[str, int | None]:
        """Set each crystal's ``funnel_stage`` relative to a base material of the VAE's set; return
        the counts (:func:`ml.generation.funnel.assign_funnel_stages`)."""
        base = self.selection.set_index("material_id").loc[base_id]
        return assign_funnel_stages(crystals, base["formula"], float(base["formation_energy_per_atom"]),
                                    self.training_formulas, "formation_energy_per_atom" in self.predictors)


def fit_latent_prior(model_dir: str | Path | None = None, dataset="mp2024", n_components: int = 8) -> Path:
    """Fit the latent prior of random generation (:mod:`ml.generation.latent_prior`) to a trained
    generative model's training crystals and save it as ``latent_prior.npz`` beside ``vae.pt``;
    returns its path."""
    model = GenerativeModel.load(model_dir, dataset, predictors={})
    path = model_folder(model_dir) / PRIOR_FILE
    model.fit_prior(n_components).save(path)
    return path
