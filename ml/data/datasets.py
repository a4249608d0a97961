"""The dataset registry: which materials a map is built from, and where their CIFs come from.

Named datasets (all read from the Materials Project mirror, see ``../shared/datasets/SOURCES.md``):

| name | materials |
|---|---|
| ``mp2024`` (default) | mirror materials with 2 to 5 elements (141,659; the recipe of Suzuki et al. 2022) |
| ``mp2024-icsd`` | those of ``mp2024`` whose MP entry has ``icsd_origin`` true (44,349) |

Any other name is read as a path: a folder of ``*.cif`` files (searched recursively), a
``.zip`` of CIFs, or one ``.cif`` file; each file's stem is its ``material_id``.

The mirror folder is ``MATMAP_MIRROR_DIR`` (default ``../shared/datasets``). Without it, a
user with a Materials Project API key (``MATMAP_MP_API_KEY`` or ``MP_API_KEY``) gets the same
two files downloaded once through ``mp-api`` into ``data/cache/mp-api/`` (:func:`download_from_mp_api`).
"""

from __future__ import annotations

import gzip
import json
import logging
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ml.settings import get_settings
from ml.data.splits import assign_splits

log = logging.getLogger(__name__)

STRUCTURES_FILE = "mp2024_structures.jsonl.gz"
PROPERTIES_FILE = "mp2024_properties.csv.gz"
SUPERCON_FILE = "supercon_3dsc.csv"

#: Property columns the map and the neighbour tables show, with units (``None``: no unit).
PROPERTY_UNITS: dict[str, str | None] = {
    "formation_energy_per_atom": "eV/atom",
    "energy_per_atom": "eV/atom",
    "band_gap": "eV",
    "total_magnetization": "μB/cell",
    "density": "g/cm³",
    "spacegroup_number": None,
    "crystal_system": None,
    "nsites": None,
    "nelements": None,
    "e_above_hull": "eV/atom",
}


class DatasetError(ValueError):
    """A dataset cannot be found or read (unknown name, missing mirror, unreadable file)."""


@dataclass(frozen=True)
class Dataset:
    """A named, ordered set of materials and the way to read their CIFs.

    Attributes:
        name: registry name (``mp2024``) or, for user data, ``user-<folder name>``.
        material_ids: ids in source order, shape ``(n,)``.
        read_records: yields ``(material_id, cif_text)`` for the given ids (all when ``None``).
        properties: one row per material (index ``material_id``), columns of the mirror's
            properties table where known (units in :data:`PROPERTY_UNITS`); NaN where unknown.
    """

    name: str
    material_ids: tuple[str, ...]
    read_records: Callable[[set[str] | None], Iterator[tuple[str, str]]] = field(repr=False)
    properties: pd.DataFrame = field(repr=False)

    def __len__(self) -> int:
        return len(self.material_ids)

    def records(self, material_ids: set[str] | None = None) -> Iterator[tuple[str, str]]:
        """``(material_id, cif_text)`` pairs in source order, restricted to ``material_ids``."""
        wanted = set(self.material_ids) if material_ids is None else set(material_ids)
        return self.read_records(wanted)

    def subset(self, suffix: str, material_ids: set[str]) -> "Dataset":
        """The materials of this dataset that are in ``material_ids``, named ``<name>-<suffix>``
        (its own feature caches), reading the same source."""
        ids = tuple(m for m in self.material_ids if m in material_ids)
        return Dataset(f"{self.name}-{suffix}", ids, self.read_records, self.properties.loc[list(ids)])

    def split_subset(self, split: str) -> "Dataset":
        """The materials of one split (``train``, ``val``, ``test``) as ``<name>-<split>``
        (its own feature caches, e.g. the XRD of the test split only)."""
        return self.subset(split, {m for m, s in zip(self.material_ids, self.splits()) if s == split})

    def splits(self) -> np.ndarray:
        """``"train" | "val" | "test"`` per material, shape ``(n,)`` (see :mod:`ml.data.splits`)."""
        return assign_splits(self.material_ids)


# --------------------------------------------------------------------------- mirror files


def mirror_dir() -> Path:
    """The folder holding the mirror files; downloads them through mp-api when absent.

    Raises:
        DatasetError: no mirror at ``MATMAP_MIRROR_DIR`` and no API key to download it.
    """
    settings = get_settings()
    mirror = Path(settings.mirror_dir)
    if (mirror / STRUCTURES_FILE).is_file() and (mirror / PROPERTIES_FILE).is_file():
        return mirror
    fallback = settings.cache_dir / "mp-api"
    if (fallback / STRUCTURES_FILE).is_file() and (fallback / PROPERTIES_FILE).is_file():
        return fallback
    key = settings.api_key()
    if not key:
        raise DatasetError(
            f"no Materials Project mirror at {mirror} (set MATMAP_MIRROR_DIR) and no API key "
            "to download it (set MATMAP_MP_API_KEY)"
        )
    download_from_mp_api(fallback, api_key=key)
    return fallback


def read_mirror_properties(folder: Path) -> pd.DataFrame:
    """The mirror's properties table, index ``material_id``; ``icsd_origin`` as a nullable bool."""
    table = pd.read_csv(folder / PROPERTIES_FILE, dtype={"icsd_origin": "string"})
    table["icsd_origin"] = table["icsd_origin"].map({"true": True, "false": False}).astype("boolean")
    return table.set_index("material_id")


def read_jsonl_records(path: Path, wanted: set[str] | None) -> Iterator[tuple[str, str]]:
    """``(material_id, cif)`` from a ``{"material_id", "cif"}`` JSON-lines file (gzip or plain)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if wanted is not None:
                # cheap pre-filter on the id, which is the first key of every line
                head = line[:64]
                start = head.find('"material_id": "')
                if start >= 0:
                    mid = head[start + 16 : head.find('"', start + 16)]
                    if mid not in wanted:
                        continue
            record = json.loads(line)
            if wanted is None or record["material_id"] in wanted:
                yield record["material_id"], record["cif"]


def read_supercon_labels(folder: Path | None = None) -> pd.DataFrame:
    """Superconductor labels per material from ``supercon_3dsc.csv`` (3DSC, Sommer et al. 2023).

    Returns a table indexed by ``material_id`` with columns ``supercon_label`` (one of
    ``superconductor`` — a direct, undoped match with Tc > 0 K; ``non-superconductor`` —
    direct matches measured at Tc = 0 K only; ``doped match`` — only synthetically doped
    matches) and ``tc_kelvin`` (highest Tc among direct matches, K). Materials without any
    SuperCon match are absent (the map shows them as ``no SuperCon entry``).
    """
    folder = folder or mirror_dir()
    path = folder / SUPERCON_FILE
    if not path.is_file():
        return pd.DataFrame(columns=["supercon_label", "tc_kelvin"]).rename_axis("material_id")
    rows = pd.read_csv(path)
    doped = rows["synthetically_doped"].astype(str).str.lower() == "true"
    direct = rows[~doped]
    tc = direct.groupby("material_id")["tc_kelvin"].max()
    label = pd.Series("doped match", index=pd.Index(rows["material_id"].unique(), name="material_id"))
    label[tc.index] = np.where(tc > 0, "superconductor", "non-superconductor")
    out = pd.DataFrame({"supercon_label": label})
    out["tc_kelvin"] = tc.reindex(out.index)
    return out


# --------------------------------------------------------------------------- registry


def _mirror_dataset(name: str, keep: Callable[[pd.DataFrame], pd.Series]) -> Dataset:
    folder = mirror_dir()
    table = read_mirror_properties(folder)
    table = table[keep(table).fillna(False).astype(bool)]
    structures = folder / STRUCTURES_FILE

    def read(wanted: set[str] | None) -> Iterator[tuple[str, str]]:
        return read_jsonl_records(structures, wanted)

    return Dataset(name=name, material_ids=tuple(table.index), read_records=read, properties=table)


REGISTRY: dict[str, Callable[[], Dataset]] = {
    "mp2024": lambda: _mirror_dataset("mp2024", lambda t: t["nelements"].between(2, 5)),
    "mp2024-icsd": lambda: _mirror_dataset(
        "mp2024-icsd", lambda t: t["nelements"].between(2, 5) & t["icsd_origin"].eq(True)
    ),
}


def _cif_files(path: Path) -> list[tuple[str, Callable[[], str]]]:
    """``(relative name, reader)`` for each CIF under a folder, in a zip, or one file."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".cif" and p.is_file())
        return [(str(p.relative_to(path)), lambda p=p: p.read_text(errors="replace")) for p in files]
    if path.suffix.lower() == ".zip":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise DatasetError(f"{path} is not a readable zip file: {exc}") from exc
        names = sorted(n for n in archive.namelist() if n.lower().endswith(".cif") and not n.endswith("/"))
        return [(n, lambda n=n: archive.read(n).decode("utf-8", errors="replace")) for n in names]
    if path.is_file():
        return [(path.name, lambda: path.read_text(errors="replace"))]
    raise DatasetError(f"{path} is neither a dataset name ({', '.join(REGISTRY)}) nor a CIF file, folder or zip")


def material_id_for_file(relative_name: str) -> str:
    """A user material's id: the file's path without the ``.cif`` suffix, ``/`` kept."""
    return relative_name[: -len(".cif")] if relative_name.lower().endswith(".cif") else relative_name


def dataset_name(name: str) -> str:
    """The name a dataset's caches and maps are filed under: a registry name as is,
    ``user-<stem>`` for an existing path (``/data/my_cifs`` → ``user-my_cifs``); any other
    name is already a map name (``user-my_cifs``, ``mp2024-test``) and comes back unchanged."""
    path = Path(name).expanduser()
    if name in REGISTRY or not path.exists():
        return name
    return f"user-{path.resolve().stem}"


def _user_dataset(path: Path) -> Dataset:
    files = _cif_files(path)
    if not files:
        raise DatasetError(f"no .cif files found in {path}")
    readers = {material_id_for_file(name): reader for name, reader in files}
    ids = tuple(readers)

    def read(wanted: set[str] | None) -> Iterator[tuple[str, str]]:
        for mid in ids:
            if wanted is None or mid in wanted:
                yield mid, readers[mid]()

    table = pd.DataFrame(index=pd.Index(ids, name="material_id"))
    return Dataset(name=dataset_name(str(path)), material_ids=ids, read_records=read, properties=table)


def get_dataset(name: str) -> Dataset:
    """A dataset by registry name, or user CIFs by path (folder, ``.zip`` or ``.cif``).

    Raises:
        DatasetError: unknown name that is not an existing path, a missing mirror without an
            API key, or a folder / zip without CIFs.
    """
    if name in REGISTRY:
        return REGISTRY[name]()
    path = Path(name).expanduser()
    if path.exists():
        return _user_dataset(path)
    raise DatasetError(
        f"unknown dataset {name!r}: use one of {', '.join(REGISTRY)} or a path to CIF files"
    )


# --------------------------------------------------------------------------- mp-api fallback

MP_API_FIELDS = [
    "material_id",
    "structure",
    "formation_energy_per_atom",
    "energy_per_atom",
    "band_gap",
    "total_magnetization",
    "density",
    "symmetry",
    "theoretical",
    "nsites",
    "nelements",
]


def download_from_mp_api(folder: Path, api_key: str, client_factory: Callable[[str], object] | None = None) -> None:
    """Write the two mirror files into ``folder`` from the Materials Project API.

    Gives users without the local mirror the same data (2–5-element materials), in the
    mirror's format, so every later step reads them the same way. ``icsd_origin`` is taken as
    ``not theoretical``.

    Args:
        folder: where ``mp2024_structures.jsonl.gz`` and ``mp2024_properties.csv.gz`` go.
        api_key: a Materials Project API key.
        client_factory: ``api_key -> client`` with ``client.materials.summary.search(...)``
            (default: ``mp_api.client.MPRester``; tests pass a fake).

    Raises:
        DatasetError: mp-api is not installed, or the download fails.
    """
    if client_factory is None:
        try:
            from mp_api.client import MPRester  # noqa: PLC0415 (optional dependency)
        except ImportError as exc:
            raise DatasetError("the mirror is missing and mp-api is not installed: pip install mp-api") from exc
        client_factory = MPRester
    folder.mkdir(parents=True, exist_ok=True)
    try:
        client = client_factory(api_key)
        docs = client.materials.summary.search(num_elements=(2, 5), fields=MP_API_FIELDS)
    except Exception as exc:  # the client raises its own error types
        raise DatasetError(f"Materials Project download failed: {exc}") from exc
    rows = []
    tmp_structures = folder / (STRUCTURES_FILE + ".part")
    with gzip.open(tmp_structures, "wt", encoding="utf-8") as out:
        for doc in sorted(docs, key=lambda d: _id_sort_key(str(d.material_id))):
            structure = doc.structure
            mid = str(doc.material_id)
            out.write(json.dumps({"material_id": mid, "cif": structure.to(fmt="cif")}) + "\n")
            symmetry = getattr(doc, "symmetry", None)
            theoretical = getattr(doc, "theoretical", None)
            rows.append(
                {
                    "material_id": mid,
                    "formula": structure.composition.formula.replace(" ", ""),
                    "nsites": len(structure),
                    "nelements": len(structure.composition.elements),
                    "icsd_origin": "" if theoretical is None else str(not theoretical).lower(),
                    "formation_energy_per_atom": doc.formation_energy_per_atom,
                    "energy_per_atom": doc.energy_per_atom,
                    "band_gap": doc.band_gap,
                    "total_magnetization": doc.total_magnetization,
                    "density": doc.density,
                    "spacegroup_number": getattr(symmetry, "number", None),
                    "e_above_hull": None,
                    "property_source": "mp-api",
                }
            )
    tmp_properties = folder / (PROPERTIES_FILE + ".part")
    pd.DataFrame(rows).to_csv(tmp_properties, index=False, compression="gzip")
    tmp_structures.replace(folder / STRUCTURES_FILE)
    tmp_properties.replace(folder / PROPERTIES_FILE)
    log.info("downloaded %d materials from the Materials Project into %s", len(rows), folder)


def _id_sort_key(material_id: str) -> tuple[str, int]:
    prefix, _, number = material_id.partition("-")
    return (prefix, int(number)) if number.isdigit() else (prefix, 0)
