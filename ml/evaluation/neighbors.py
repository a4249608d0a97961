"""Neighbour lists of the benchmark materials under every descriptor (Suzuki et al. 2022,
analysis 2), and how many of them share the query's concept.

Concepts (by element set, as in the paper's reading of its neighbour tables):
- cuprate: contains Cu and O (for the Hg-1223 query, mp-22601);
- Li–transition-metal oxide: contains Li, O and at least one transition metal (pymatgen
  ``Element.is_transition_metal``: groups 3–12 incl. La and Ac series) (for LiCoO2, mp-22526).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd
from pymatgen.core import Element

from ml.mapping.format import UnknownMaterialError

#: material id → (name, concept checked among its neighbours or None)
QUERIES: dict[str, tuple[str, str | None]] = {
    "mp-22601": ("Hg-1223 HgBa2Ca2Cu3O8", "cuprate"),
    "mp-22526": ("LiCoO2", "Li–transition-metal oxide"),
    "mp-541449": ("Cr2Ge2Te6", None),
    "mp-1200096": ("Sm2Co17", None),
}


def is_cuprate(elements: Iterable[str]) -> bool:
    """Contains Cu and O."""
    return {"Cu", "O"} <= set(elements)


def is_li_tm_oxide(elements: Iterable[str]) -> bool:
    """Contains Li, O and a transition metal."""
    elements = set(elements)
    return {"Li", "O"} <= elements and any(Element(e).is_transition_metal for e in elements)


CONCEPTS: dict[str, Callable[[Iterable[str]], bool]] = {
    "cuprate": is_cuprate,
    "Li–transition-metal oxide": is_li_tm_oxide,
}


def concept_fraction(neighbor_ids: Iterable[str], elements_of: dict[str, str], concept: str) -> float:
    """Share of ``neighbor_ids`` whose element set (``elements_of[id]``, space-separated) has
    ``concept``. Raises ValueError for an empty list, KeyError for an unknown concept."""
    ids = list(neighbor_ids)
    if not ids:
        raise ValueError("no neighbours")
    test = CONCEPTS[concept]
    return sum(test(elements_of[m].split()) for m in ids) / len(ids)


def neighbor_lists(tables: dict[str, object], queries: Iterable[str], k: int = 50) -> dict[str, dict[str, list[str] | str]]:
    """``{query: {descriptor: [k neighbour ids] | "not covered: …"}}`` with each table's
    ``neighbors(material_id, k)`` (exact Euclidean within the set it covers)."""
    out: dict[str, dict[str, list[str] | str]] = {}
    for query in queries:
        out[query] = {}
        for name, table in tables.items():
            try:
                out[query][name] = table.neighbors(query, k)["material_id"].astype(str).tolist()
            except UnknownMaterialError:
                out[query][name] = f"query not covered by {name}"
    return out


def fractions_table(lists: dict[str, dict[str, list[str] | str]], elements_of: dict[str, str]) -> pd.DataFrame:
    """One row per (query with a concept, descriptor): ``fraction`` (NaN if not covered) and ``k``."""
    rows = []
    for query, by_name in lists.items():
        concept = QUERIES.get(query, (query, None))[1]
        if concept is None:
            continue
        for name, ids in by_name.items():
            covered = isinstance(ids, list)
            rows.append({"query": query, "concept": concept, "descriptor": name,
                         "fraction": concept_fraction(ids, elements_of, concept) if covered else float("nan"),
                         "k": len(ids) if covered else 0})
    return pd.DataFrame(rows)
