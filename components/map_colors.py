"""How a colour mode paints the materials map (:func:`color_layers`): which trace carries
which colours, the colour bar and the legend.

Colour modes (:data:`COLOR_MODES`):

- ``element``: materials containing an element in colour on top of the grey rest;
- ``nelements``, ``crystal_system``: categorical colours of every point, with a colour bar
  whose ticks name the categories;
- a property (``band_gap`` …): the materials that have a value, coloured on a continuous scale
  clipped to the 1st–99th percentile, and grey "no data" points; the colour-bar title carries
  the unit (``band gap (eV)``). When most materials have a value (every property of mp2024),
  the colours go on the base trace and the few grey points on top, so a recolour sends one
  number per point and no coordinates (2.7 MB → 0.8 MB on the 141,659-point map); otherwise the
  coloured subset is the foreground, on top of the grey base;
- ``supercon_label``: the materials with a SuperCon entry in colour on top of the rest.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from components.map_style import CATEGORY_COLORS, COLORBAR_INSIDE, ELEMENT_COLOR, MISSING_COLOR, auto_point_size, style_defaults
from ml.service import column_label

#: Properties that can colour the map on a continuous scale.
PROPERTY_MODES = (
    "formation_energy_per_atom",
    "band_gap",
    "density",
    "total_magnetization",
    "e_above_hull",
    "spacegroup_number",
)


#: Colour modes: key (as in ``?color=``) -> label shown in the menu.
COLOR_MODES: dict[str, str] = {
    "element": "Element (present / absent)",
    "nelements": "Number of elements",
    "formation_energy_per_atom": "Formation energy (eV/atom)",
    "band_gap": "Band gap (eV)",
    "density": "Density (g/cm³)",
    "total_magnetization": "Magnetisation (μB/cell)",
    "e_above_hull": "Energy above hull (eV/atom)",
    "spacegroup_number": "Space group number",
    "crystal_system": "Crystal system",
    "supercon_label": "Superconductor (SuperCon label)",
}


DEFAULT_MODE = "nelements"


DEFAULT_ELEMENT = "O"


CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")


#: SuperCon labels drawn in colour, with their colours; "no SuperCon entry" stays grey.
SUPERCON_COLORS = {
    "superconductor": "#d62728",
    "doped match": "#ff9f1c",
    "non-superconductor": "#1f77b4",
}


@dataclass
class ColorLayers:
    """How one colour mode paints the map.

    Attributes:
        base_marker: the ``marker`` of the base trace (all materials).
        base_name: legend name of the base trace (``None``: no legend entry).
        foreground_rows: rows drawn again on top, ``(m,)`` int (may be empty).
        foreground_marker: the ``marker`` of that foreground trace.
        foreground_name: its legend name (``None``: no legend entry).
        title: human name of what the colour shows, with units where it has some.
    """

    base_marker: dict
    base_name: str | None
    foreground_rows: np.ndarray
    foreground_marker: dict = field(default_factory=dict)
    foreground_name: str | None = None
    title: str = ""

    @property
    def scale_marker(self) -> dict:
        """The marker that carries the colour scale (base or foreground, whichever has a colour bar)."""
        return self.base_marker if "colorbar" in self.base_marker else self.foreground_marker


def parse_mode(mode: str | None) -> str:
    """A valid colour mode: ``mode`` itself, or :data:`DEFAULT_MODE` when it is ``None``/empty.

    Raises:
        ValueError: an unknown mode name.
    """
    if not mode:
        return DEFAULT_MODE
    if mode not in COLOR_MODES:
        raise ValueError(f"unknown colour mode {mode!r}; choose one of {', '.join(COLOR_MODES)}")
    return mode


def contains_element(elements: pd.Series, symbol: str) -> np.ndarray:
    """``(n,)`` bool: which rows of a space-separated ``elements`` column contain ``symbol``."""
    padded = " " + elements.fillna("").astype(str) + " "
    return padded.str.contains(f" {symbol} ", regex=False).to_numpy(dtype=bool)


def available_elements(elements: pd.Series) -> list[str]:
    """The element symbols present in an ``elements`` column, by atomic number."""
    from pymatgen.core import Element

    symbols = set()
    for text in elements.dropna().astype(str).unique():
        symbols.update(text.split())

    def atomic_number(symbol: str) -> int:
        try:
            return Element(symbol).Z
        except ValueError:
            return 999

    return sorted(symbols, key=lambda s: (atomic_number(s), s))


def _discrete_colorscale(colors: list[str]) -> list[list]:
    """A stepped colour scale giving integer code ``i`` (with ``cmin=-0.5``) ``colors[i]``."""
    n = len(colors)
    scale = []
    for i, color in enumerate(colors):
        scale.append([i / n, color])
        scale.append([(i + 1) / n, color])
    return scale


def _categorical_marker(codes: np.ndarray, names: list[str], colors: list[str], title: str, size: float, opacity: float) -> dict:
    n = len(names)
    return {
        "color": codes.astype(np.float32),
        "colorscale": _discrete_colorscale(colors),
        "cmin": -0.5,
        "cmax": n - 0.5,
        "showscale": True,
        "colorbar": {
            "title": {"text": title},
            "tickvals": list(range(n)),
            "ticktext": names,
            **COLORBAR_INSIDE,
        },
        "size": size,
        "opacity": opacity,
    }


def _robust_range(values: np.ndarray, column: str) -> tuple[float, float]:
    """Colour range of a property: 1st–99th percentile (space group: 1–230; band gap and
    energy above hull from 0)."""
    if column == "spacegroup_number":
        return 1.0, 230.0
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [1, 99]))
    if column in ("band_gap", "e_above_hull"):  # physical zero: metals, stable phases
        lo = 0.0
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def color_layers(materials: pd.DataFrame, mode: str, element: str | None = None, style: dict | None = None) -> ColorLayers:
    """How ``mode`` colours the map of ``materials`` (see the module docstring).

    Args:
        materials: the map's table (needs ``elements``, ``nelements`` and the mode's column).
        mode: a key of :data:`COLOR_MODES`.
        element: the element symbol of the ``element`` mode (default :data:`DEFAULT_ELEMENT`).
        style: overrides of :data:`components.map_style.MAP_STYLE` (not modified).

    Raises:
        ValueError: unknown mode.
    """
    mode = parse_mode(mode)
    s = style_defaults()
    if style:
        s.update(copy.deepcopy(style))
    if s["point_size"] is None:
        s["point_size"] = auto_point_size(len(materials))
    if s["foreground_size"] is None:
        s["foreground_size"] = s["point_size"] + 1.0
    if mode == "element":
        return _element_layers(materials, element or DEFAULT_ELEMENT, s)
    if mode in _CATEGORICAL:
        return _CATEGORICAL[mode](materials, s)
    return _property_layers(materials, mode, s)  # a property on a continuous scale (one of PROPERTY_MODES)


def _grey(s: dict) -> dict:
    """The marker of materials drawn without a colour (``s``: the resolved style)."""
    return {"color": MISSING_COLOR, "size": s["point_size"], "opacity": s["opacity"]}


def _element_layers(materials: pd.DataFrame, symbol: str, s: dict) -> ColorLayers:
    """Materials containing ``symbol`` in colour on top of the grey rest."""
    present = contains_element(materials["elements"], symbol)
    return ColorLayers(
        base_marker=_grey(s),
        base_name=f"no {symbol}",
        foreground_rows=np.flatnonzero(present),
        foreground_marker={"color": ELEMENT_COLOR, "size": s["foreground_size"], "opacity": 0.9},
        foreground_name=f"contains {symbol} ({int(present.sum()):,})",
        title=f"contains {symbol}",
    )


def _nelements_layers(materials: pd.DataFrame, s: dict) -> ColorLayers:
    """One colour per number of elements, on every point."""
    counts = pd.to_numeric(materials["nelements"], errors="coerce").to_numpy(dtype=float)
    present = sorted({int(c) for c in counts[np.isfinite(counts)]})
    title = "number of elements"
    if not present:
        return ColorLayers(base_marker=_grey(s), base_name="no data", foreground_rows=_NO_ROWS, title=title)
    code_of = {value: i for i, value in enumerate(present)}
    names = [str(v) for v in present]
    colors = [CATEGORY_COLORS[i % len(CATEGORY_COLORS)] for i in range(len(present))]
    codes = np.array([code_of.get(int(c), 0) if np.isfinite(c) else 0 for c in counts])
    marker = _categorical_marker(codes, names, colors, title, s["point_size"], s["opacity"])
    return ColorLayers(base_marker=marker, base_name=None, foreground_rows=_NO_ROWS, title=title)


def _crystal_system_layers(materials: pd.DataFrame, s: dict) -> ColorLayers:
    """One colour per crystal system (grey "unknown" where missing), on every point."""
    systems = materials["crystal_system"].astype(object).where(materials["crystal_system"].notna(), None)
    names = list(CRYSTAL_SYSTEMS)
    colors = list(CATEGORY_COLORS[: len(names)])
    codes = np.array([names.index(v) if v in names else len(names) for v in systems])
    if (codes == len(names)).any():
        names.append("unknown")
        colors.append(MISSING_COLOR)
    title = "crystal system"
    marker = _categorical_marker(codes, names, colors, title, s["point_size"], s["opacity"])
    return ColorLayers(base_marker=marker, base_name=None, foreground_rows=_NO_ROWS, title=title)


def _supercon_layers(materials: pd.DataFrame, s: dict) -> ColorLayers:
    """The materials with a SuperCon entry in their label's colour on top of the grey rest."""
    n = len(materials)
    labels = materials["supercon_label"].astype(object).to_numpy() if "supercon_label" in materials else np.full(n, None)
    names = list(SUPERCON_COLORS)
    rows = np.flatnonzero(np.isin(labels, names))
    codes = np.array([names.index(labels[r]) for r in rows])
    title = "SuperCon label"
    marker = _categorical_marker(codes, names, list(SUPERCON_COLORS.values()), title, s["foreground_size"] + 1, 0.95)
    return ColorLayers(
        base_marker=_grey(s),
        base_name="no SuperCon entry",
        foreground_rows=rows,
        foreground_marker=marker,
        foreground_name="SuperCon entry",
        title=title,
    )


_NO_ROWS = np.zeros(0, dtype=np.int64)
#: The colour modes with one colour per category: mode -> builder.
_CATEGORICAL = {"nelements": _nelements_layers, "crystal_system": _crystal_system_layers,
                "supercon_label": _supercon_layers}


def _property_layers(materials: pd.DataFrame, mode: str, s: dict) -> ColorLayers:
    """A property on a continuous scale clipped to :func:`_robust_range`, "no data" in grey.
    When most materials have a value the colours go on the base trace (a recolour then sends
    one number per point and no coordinates) and the grey points on top; otherwise the
    coloured subset is the foreground, on top of the grey base."""
    n = len(materials)
    values = pd.to_numeric(materials[mode], errors="coerce").to_numpy(dtype=float) if mode in materials else np.full(n, np.nan)
    rows = np.flatnonzero(np.isfinite(values))
    lo, hi = _robust_range(values, mode)
    title = column_label(mode) if mode != "spacegroup_number" else "space group number"
    on_base = 2 * len(rows) >= n
    marker = {
        # on the base trace every point needs a colour: the missing ones (drawn grey on top) take lo
        "color": (np.where(np.isfinite(values), values, lo) if on_base else values[rows]).astype(np.float32),
        "colorscale": s["spacegroup_colorscale"] if mode == "spacegroup_number" else s["continuous_colorscale"],
        "cmin": lo,
        "cmax": hi,
        "showscale": True,
        "colorbar": {"title": {"text": title}, **COLORBAR_INSIDE},
        "size": s["point_size"],
        "opacity": s["opacity"],
    }
    if on_base:  # the missing ones grey on top, same size: the coloured point below is hidden
        missing = np.flatnonzero(~np.isfinite(values))
        return ColorLayers(base_marker=marker, base_name=None, foreground_rows=missing, foreground_marker=_grey(s),
                           foreground_name=f"no data ({len(missing):,})" if len(missing) else None, title=title)
    return ColorLayers(base_marker=_grey(s), base_name=f"no data ({n - len(rows):,})", foreground_rows=rows,
                       foreground_marker=marker, foreground_name=None, title=title)
