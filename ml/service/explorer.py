"""The latent explorer's narrow interface for the app (``/generate``): torch-free at import.

The app reaches ``ml`` only through :mod:`ml.service` (this module is part of it) and :mod:`ml.settings`.
Everything that needs torch (:mod:`ml.generation.generative_model`) is imported inside the functions, and the
trained :class:`ml.generation.generative_model.GenerativeModel` is loaded once per process and kept (a failed load is
not kept: once the model is trained or the voxel store built, the next call finds it without a
restart). Functions return plain data: dicts of JSON-ready values and CIF text. A result as files
(CIF names, a zip, the 3D structure) and the results kept between requests: :mod:`ml.service.generated`.

::

    problem = unavailable()                  # None, or {"message", "command"} to show
    quality_warning()                        # None, or why the loaded generator is not usable yet
    search("NaCl")                           # rows of the VAE set matching an id or a formula
    in_vae_set("mp-22862")                   # the material page: reads the built vae_set.parquet, no mirror
    result = interpolate("mp-…", "mp-…", steps=10, progress=cb)
    result = sample_around("mp-…", variance=0.5, n=100, decile=None, progress=cb)

A *result* is ``{"mode", "inputs", "rows", "funnel", "energy_checked"}``; each row is
:meth:`ml.generation.records.GeneratedCrystal.record` (cell lengths ``a``, ``b``, ``c`` in Å, predicted
``formation_energy_per_atom`` in eV/atom, ``funnel_stage`` …) plus ``cif`` (the decoded
structure as CIF text, ``""`` when nothing decoded). ``funnel`` is
:func:`ml.generation.funnel.funnel_counts` for targeted generation, ``None`` on a path.

Errors: :class:`ExplorerUnavailable` (no trained generator, no voxel store; carries the command
that makes it) and :class:`ExplorerError` (a request that cannot be served: unknown id, id
outside the VAE set, a value out of range), both with messages fit for a user.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path

from ml.generation.vae_set import COLUMNS as VAE_SET_COLUMNS
from ml.mapping.tables import plain_record

VAE_DATASET = "mp2024"
DEFAULT_STEPS, MAX_STEPS = 10, 30
DEFAULT_SAMPLES, MAX_SAMPLES = 100, 1000
DEFAULT_VARIANCE, MAX_VARIANCE = 0.5, 10.0
N_DECILES = 10
#: Columns of the rows of the VAE set that :func:`search` returns (those of the stored set).
SEARCH_COLUMNS = VAE_SET_COLUMNS

Progress = Callable[[int, int], None] | None


class ExplorerError(ValueError):
    """A request the explorer cannot serve (unknown id, id outside the VAE set, bad value)."""


class ExplorerUnavailable(RuntimeError):
    """No trained generator or no voxel store.

    Attributes:
        command: the command that makes what is missing.
    """

    def __init__(self, message: str, command: str) -> None:
        super().__init__(message)
        self.command = command


_lock = threading.RLock()
_source: dict = {"model_dir": None, "dataset": VAE_DATASET}
_generator = None
_selection = None  # the VAE set's table, loaded without the models (for in_vae_set)


def use_source(model_dir: str | Path | None = None, dataset=VAE_DATASET) -> None:
    """Serve the generator of ``model_dir`` (a folder or a name under ``data/models``; default
    ``vae-cpu``) on the voxel store of ``dataset`` (a registry name or an ``ml.data.datasets.Dataset``);
    forgets what was loaded. Tests point it at a tiny trained pair."""
    global _generator, _selection
    with _lock:
        _source.update(model_dir=model_dir, dataset=dataset)
        _generator = _selection = None


def _dataset_name() -> str:
    dataset = _source["dataset"]
    return dataset if isinstance(dataset, str) else dataset.name


def generator():
    """The trained :class:`ml.generation.generative_model.GenerativeModel`, loaded once per process.

    Raises:
        ExplorerUnavailable: no ``vae.pt``, or the dataset's voxel store is not built.
    """
    global _generator
    if _generator is None:
        with _lock:
            if _generator is None:
                from ml.generation.generative_model import GenerativeModel
                from ml.generation.voxel_data import VAEDataError

                try:
                    _generator = GenerativeModel.load(_source["model_dir"], dataset=_source["dataset"], device="cpu")
                except VAEDataError as error:
                    raise ExplorerUnavailable(str(error), f"python -m ml vae-data --dataset {_dataset_name()}") from None
                except (FileNotFoundError, ValueError) as error:  # ValueError: a checkpoint of an older format
                    raise ExplorerUnavailable(str(error), "python -m ml train-vae --config cpu") from None
    return _generator


def loaded() -> bool:
    """Whether :func:`generator` has loaded the generator in this process (it never loads)."""
    return _generator is not None


def unavailable() -> dict | None:
    """``None`` when the explorer can run (the generator is loaded), else
    ``{"message": why, "command": what to run}``."""
    try:
        generator()
    except ExplorerUnavailable as error:
        return {"message": str(error), "command": error.command}
    return None


def quality_warning() -> str | None:
    """A warning for the page unless the loaded generator passed every gate of its own
    evaluation (``metrics.json`` beside ``vae.pt``, written by ``python -m ml evaluate-vae``):
    the failed gates with their values and targets, or that it has not been evaluated.
    ``None`` when it is usable.

    Raises:
        ExplorerUnavailable: as :func:`generator`.
    """
    report = getattr(generator(), "report", None)
    if not report or "gates" not in report:
        return ("This generator has not been evaluated yet (no metrics.json beside its weights), so how many of its "
                "crystals are valid is unknown. Run: python -m ml evaluate-vae")
    if report.get("usable"):
        return None
    failed = [f"{name.replace('_', ' ')} {_gate_value(name, gate['value'])} "
              f"(needs {gate['op']} {_gate_value(name, gate['target'])})"
              for name, gate in report["gates"].items() if not gate["passed"]]
    return ("This generator does not pass its quality gates yet, so many generated crystals are not plausible: "
            + "; ".join(failed) + ". Its model card gives every number.")


#: Gates measured in Å or in sites, with their unit; every other gate is a share (0–1).
ABSOLUTE_GATES = {"cell_length_mae": " Å", "site_count_error": " sites"}


def _gate_value(name: str, value) -> str:
    if value is None:
        return "not measured"
    if name in ABSOLUTE_GATES:
        return f"{value:.2f}{ABSOLUTE_GATES[name]}"
    return f"{value:.0%}"


def evaluation_summary() -> dict | None:
    """The loaded generator's evaluation as plain data for the page: ``{"gates": {name: {"value",
    "target", "op", "passed"}}, "usable", "funnel"}``; ``None`` when it has not been evaluated.

    Raises:
        ExplorerUnavailable: as :func:`generator`.
    """
    report = getattr(generator(), "report", None)
    if not report or "gates" not in report:
        return None
    return {"gates": report["gates"], "usable": bool(report.get("usable")), "funnel": report.get("funnel")}


def vae_table():
    """The VAE set (:data:`ml.generation.vae_set.COLUMNS`): the loaded generator's selection, else the
    built artifact ``data/artifacts/<dataset>/vae_set.parquet`` (:func:`ml.generation.vae_set.load_vae_set`:
    derived once from the voxel store on an install built before it existed), read once per
    process. Never reads the mirror; never builds the set.

    Raises:
        ExplorerUnavailable: the set has not been built.
    """
    global _selection
    if _generator is not None:
        return _generator.selection
    if _selection is None:
        with _lock:
            if _selection is None:
                from ml.generation.vae_set import VAESetMissing, load_vae_set

                try:
                    _selection = load_vae_set(_dataset_name())
                except VAESetMissing as missing:
                    raise ExplorerUnavailable(str(missing), missing.command) from None
    return _selection


def in_vae_set(material_id: str | None) -> bool:
    """Whether ``material_id`` is one of the VAE's crystals (``False`` when the explorer has no
    trained generator). Cheap after the first call: the table is kept per process."""
    if not material_id or not _generator_files():
        return False
    try:
        ids = _member_ids()
    except ExplorerUnavailable:
        return False
    return str(material_id).strip() in ids


def _generator_files() -> bool:
    """Both checkpoints are where :func:`generator` would look (a file check, no torch)."""
    from ml.settings import get_settings

    model_dir = _source["model_dir"]
    folder = Path(model_dir) if model_dir is not None and Path(model_dir).is_dir() else \
        get_settings().models_dir / (model_dir or get_settings().generator_model)
    return (folder / "vae.pt").is_file()


_ids: tuple[int, frozenset] | None = None


def _member_ids() -> frozenset:
    global _ids
    table = vae_table()
    if _ids is None or _ids[0] != id(table):
        _ids = (id(table), frozenset(table["material_id"]))
    return _ids[1]


def search(query: str | None, limit: int = 30) -> list[dict]:
    """Rows of the VAE set whose id contains ``query`` or whose reduced formula contains it
    (case-insensitive); exact matches first. Columns :data:`SEARCH_COLUMNS`, energies in eV/atom.

    Raises:
        ExplorerUnavailable: the VAE set is not built.
    """
    text = (query or "").strip().lower()
    if not text:
        return []
    table = vae_table()
    ids = table["material_id"].str.lower()
    formulas = table["formula"].str.lower()
    hits = table[ids.str.contains(text, regex=False) | formulas.str.contains(text, regex=False)]
    exact = (hits["material_id"].str.lower() == text) | (hits["formula"].str.lower() == text)
    hits = hits.assign(_exact=~exact).sort_values(["_exact", "formula", "material_id"], kind="stable").head(limit)
    return [plain_record(row) for row in hits[SEARCH_COLUMNS].to_dict("records")]


def material_row(material_id: str) -> dict | None:
    """The VAE-set row of one material (:data:`SEARCH_COLUMNS`), ``None`` when not in the set."""
    table = vae_table()
    hit = table[table["material_id"] == str(material_id).strip()]
    return None if hit.empty else plain_record(hit[SEARCH_COLUMNS].iloc[0].to_dict())


# --------------------------------------------------------------------------- generation


def _check_int(name: str, value, low: int, high: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ExplorerError(f"{name} must be a whole number from {low} to {high}") from None
    if not number.is_integer() or not low <= number <= high:
        raise ExplorerError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return int(number)


def _check_id(name: str, value) -> str:
    text = str(value or "").strip()
    if not text:
        raise ExplorerError(f"choose {name} first")
    return text


def _rows(crystals) -> list[dict]:
    rows = []
    for crystal in crystals:
        row = crystal.record()
        row["cif"] = crystal.structure.to(fmt="cif") if crystal.structure is not None else ""
        rows.append(row)
    return rows


def interpolate(id_a: str, id_b: str, steps: int = DEFAULT_STEPS, progress: Progress = None) -> dict:
    """Decode ``steps`` points on the straight latent line from ``id_a`` to ``id_b`` (both included).

    Returns:
        A result (module docstring) with ``mode="interpolate"``; row ``t`` runs from 0 to 1.

    Raises:
        ExplorerUnavailable: no generator. ExplorerError: an unknown id or one outside the VAE
        set, the same id twice, ``steps`` outside 2 … :data:`MAX_STEPS`.
    """
    from ml.generation.records import GenerationError

    id_a, id_b = _check_id("the first compound", id_a), _check_id("the second compound", id_b)
    steps = _check_int("steps", steps, 2, MAX_STEPS)
    if id_a == id_b:
        raise ExplorerError("choose two different compounds")
    model = generator()
    try:
        crystals = model.interpolate(id_a, id_b, steps=steps, progress=progress)
    except GenerationError as error:
        raise ExplorerError(str(error)) from None
    return {"mode": "interpolate", "inputs": {"a": id_a, "b": id_b, "steps": steps}, "rows": _rows(crystals),
            "funnel": None, "energy_checked": "formation_energy_per_atom" in model.predictors}


def sample_around(material_id: str, variance: float = DEFAULT_VARIANCE, n: int = DEFAULT_SAMPLES,
                  decile: int | None = None, seed: int = 0, progress: Progress = None) -> dict:
    """Targeted generation: ``n`` latent vectors ~ N(μ(material), variance · I), decoded under
    the formation-energy ``decile`` (default the material's own), then the funnel.

    Returns:
        A result (module docstring) with ``mode="around"`` and the funnel counts.

    Raises:
        ExplorerUnavailable: no generator. ExplorerError: unknown id or one outside the VAE set,
        ``variance`` outside (0, :data:`MAX_VARIANCE`], ``n`` outside 1 … :data:`MAX_SAMPLES`,
        a decile outside 0–9.
    """
    from ml.generation.funnel import funnel_counts
    from ml.generation.records import GenerationError

    material_id = _check_id("a compound", material_id)
    n = _check_int("the number of samples", n, 1, MAX_SAMPLES)
    try:
        variance = float(variance)
    except (TypeError, ValueError):
        variance = math.nan
    if not (math.isfinite(variance) and 0 < variance <= MAX_VARIANCE):
        raise ExplorerError(f"the variance must be a number above 0 and at most {MAX_VARIANCE:g}")
    if decile is not None:
        decile = _check_int("the decile", decile, 0, N_DECILES - 1)
    model = generator()
    try:
        crystals = model.sample_around(material_id, variance, n, decile=decile, seed=int(seed), progress=progress)
    except GenerationError as error:
        raise ExplorerError(str(error)) from None
    checked = "formation_energy_per_atom" in model.predictors
    return {"mode": "around", "inputs": {"base": material_id, "variance": variance, "n": n, "decile": decile,
                                         "seed": int(seed)},
            "rows": _rows(crystals), "funnel": funnel_counts(crystals, energy_checked=checked), "energy_checked": checked}
