"""What the generative model gives back (after Court et al., J. Chem. Inf. Model. 60, 4518, 2020):
one :class:`GeneratedCrystal` per decoded latent vector, its CIF and CSV files
(:func:`write_generated`), and :class:`GenerationError` for a request that cannot be served.

Validity: ``valid`` is the strict rule of :func:`ml.evaluation.validity.strict_validity` (parses,
2–40 sites, distances > 0.5 Å, a cubic space group, a family's formula shape); ``valid_paper`` is
Court et al.'s (distances > 0.5 Å).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CSV_COLUMNS = ["index", "file", "formula", "valid", "valid_paper", "reason", "spacegroup_number", "a", "b", "c",
               "n_sites", "decile", "t", "formation_energy_per_atom", "band_gap", "funnel_stage"]

#: ``progress(done, total)``, called after every decoded chunk.
Progress = Callable[[int, int], None] | None


class GenerationError(ValueError):
    """A generation request that cannot be served (unknown id, id outside the VAE set, bad value)."""


def check_count(n) -> None:
    """Refuse a number of crystals that is not an integer from 1 to 100000 (:class:`GenerationError`)."""
    if not isinstance(n, int) or n < 1 or n > 100_000:
        raise GenerationError(f"n must be an integer from 1 to 100000, got {n!r}")


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
        funnel_stage: the last of :data:`ml.generation.funnel.FUNNEL_STAGES` it passed.
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
