"""Tables as the user sees them: column labels with units, and the CSV export of neighbour and
candidate tables (``python -m ml neighbors``, the app's downloads)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ml.data.datasets import PROPERTY_UNITS


def column_label(column: str) -> str:
    """``"band_gap"`` → ``"band gap (eV)"``: a column name with its unit for tables and plots."""
    unit = PROPERTY_UNITS.get(column)
    name = column.replace("_", " ")
    return f"{name} ({unit})" if unit else name


#: Units of the table columns that are not material properties (those: :data:`PROPERTY_UNITS`).
TABLE_UNITS = {"distance": "embedding units", "tc_kelvin": "K"}
#: Decimal places of the float columns of CSV exports; other float columns get
#: :data:`CSV_DEFAULT_DECIMALS`, enough for every property stored (MP's energies in meV/atom).
CSV_DECIMALS = {"tc_kelvin": 2}
CSV_DEFAULT_DECIMALS = 4


def table_csv(table: pd.DataFrame, units: dict[str, str] | None = None) -> str:
    """CSV text of a neighbour (or candidate) table, as ``python -m ml neighbors`` writes it and
    the app exports it: each header is the column name and its unit, ``formation_energy_per_atom
    (eV/atom)``, ``distance (embedding units)`` (units from :data:`PROPERTY_UNITS` and
    :data:`TABLE_UNITS`, ``units`` overriding them); floats rounded to :data:`CSV_DECIMALS`
    places, so that float32 storage noise (``3.0000002``) does not show; empty cells for
    missing values."""
    known = {**PROPERTY_UNITS, **TABLE_UNITS, **(units or {})}
    out = table.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = out[column].astype(np.float64).round(CSV_DECIMALS.get(column, CSV_DEFAULT_DECIMALS))
    out.columns = [f"{c} ({known[c]})" if known.get(c) else str(c) for c in out.columns]
    return out.to_csv(index=False)


def plain_record(row: dict) -> dict:
    """A table row as JSON-ready values: numpy scalars as Python numbers, NaN, infinities,
    ``pd.NA`` and ``pd.NaT`` as ``None`` (what a Dash store or grid can hold)."""
    out = {}
    for key, value in row.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        elif value is pd.NA or value is pd.NaT:
            value = None
        out[key] = value
    return out
