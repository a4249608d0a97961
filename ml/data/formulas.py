"""Chemical formulas as search keys (the map's formula search, :meth:`ml.mapping.artifacts.MapArtifacts.search`)."""

from __future__ import annotations

import re

import numpy as np

_ELEMENT_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*\.?\d*)")


def formula_key(formula: str) -> str | None:
    """A canonical key of a chemical formula: elements sorted, counts reduced by their greatest
    common divisor when they are whole (``"O3Fe2"`` and ``"Fe2O3"`` → ``"Fe2 O3"``); what the
    map's formula search compares. ``None`` when ``formula`` is not element symbols with
    optional positive counts (``"LiCoO2"`` yes, ``"lithium"`` or ``"Fe-2"`` no)."""
    text = formula.replace(" ", "")
    tokens = _ELEMENT_TOKEN.findall(text)
    if "".join(e + n for e, n in tokens) != text:
        return None
    counts: dict[str, float] = {}
    for element, number in tokens:
        counts[element] = counts.get(element, 0.0) + (float(number) if number else 1.0)
    values = np.array(list(counts.values()))
    if (values <= 0).any():
        return None
    if np.allclose(values, np.round(values)):
        divisor = np.gcd.reduce(np.round(values).astype(int))
        values = values / max(divisor, 1)
    return " ".join(f"{e}{v:g}" for e, v in sorted(zip(counts, values)))
