"""A material's properties as rows with units, formulas with subscripts, external links."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from dash import html

from ml.service import column_label

MP_URL = "https://next-gen.materialsproject.org/materials/{material_id}"

#: Rows of the property table: (column, label, format). Label ``None``: ``column_label``.
PROPERTY_ROWS: tuple[tuple[str, str | None, str], ...] = (
    ("formation_energy_per_atom", "Formation energy (eV/atom)", "{:.3f}"),
    ("energy_per_atom", "Energy (eV/atom)", "{:.3f}"),
    ("e_above_hull", "Energy above hull (eV/atom)", "{:.3f}"),
    ("band_gap", "Band gap (eV)", "{:.3f}"),
    ("total_magnetization", "Magnetisation (μB/cell)", "{:.2f}"),
    ("density", "Density (g/cm³)", "{:.3f}"),
    ("spacegroup_number", "Space group number", "{:.0f}"),
    ("crystal_system", "Crystal system", "{}"),
    ("nsites", "Sites in cell", "{:.0f}"),
    ("nelements", "Elements", "{:.0f}"),
    ("icsd_origin", "ICSD origin (experimental)", "{}"),
    ("supercon_label", "SuperCon label", "{}"),
    ("tc_kelvin", "SuperCon Tc (K)", "{:.1f}"),
    ("split", "Training split", "{}"),
)


def _is_missing(value) -> bool:
    if value is None or value is pd.NA:
        return True
    try:
        return isinstance(value, float) and math.isnan(value)
    except TypeError:
        return False


def format_value(value, fmt: str = "{}") -> str:
    """``fmt`` applied to ``value``; ``"—"`` for a missing value, yes/no for booleans."""
    if _is_missing(value):
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return "yes" if value.lower() == "true" else "no"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def property_rows(material: pd.Series) -> list[tuple[str, str]]:
    """``(label with unit, formatted value)`` for each known property of ``material`` present in
    its row (columns absent from the map are left out; missing values read ``—``)."""
    rows = []
    for column, label, fmt in PROPERTY_ROWS:
        if column not in material.index:
            continue
        rows.append((label or column_label(column), format_value(material[column], fmt)))
    return rows


def property_table(material: pd.Series) -> html.Table:
    """An HTML table of :func:`property_rows`."""
    return html.Table(
        className="property-table",
        children=html.Tbody([html.Tr([html.Th(label), html.Td(value)]) for label, value in property_rows(material)]),
    )


_TOKEN = re.compile(r"([A-Z][a-z]?|\(|\))(\d*\.?\d*)")


def formula_children(formula: str) -> list:
    """``"Li2CoO4"`` -> ``["Li", Sub("2"), "Co", "O", Sub("4")]`` for display (text unchanged
    when it is not a plain formula)."""
    if not formula or "".join(a + b for a, b in _TOKEN.findall(formula)) != formula:
        return [formula or ""]
    out: list = []
    for symbol, count in _TOKEN.findall(formula):
        out.append(symbol)
        if count and count != "1":
            out.append(html.Sub(count))
    return out


def external_link(material_id: str) -> html.A | None:
    """A link to the Materials Project page of an ``mp-`` id, else ``None``."""
    if not re.fullmatch(r"mp-\d+", material_id or ""):
        return None
    return html.A(
        "Materials Project ↗",
        href=MP_URL.format(material_id=material_id),
        target="_blank",
        rel="noopener noreferrer",
        className="external-link",
    )
