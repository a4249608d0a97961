"""Uploaded CIFs placed on the map: decoding uploads, locating them, and showing the result.

A *result* is a JSON-ready dict kept in the locate page's store, one per uploaded file:

| key | meaning |
|---|---|
| ``key`` | unique id of the result on the page (names its neighbour panel) |
| ``filename`` | the uploaded file's name |
| ``ok`` | ``True`` when the structure was placed |
| ``message`` | why it was not placed (``ok`` false), for the user |
| ``formula``, ``x``, ``y`` | reduced formula of the placed structure and map position (``ok`` true) |
| ``notes`` | sentences for the user on what was approximated or is unusual (``ok`` true): a disordered structure placed by its majority occupants, atom types the CIF reader guessed, an element count outside the map's range |
| ``columns``, ``rows`` | its neighbour table: column order and records (``ok`` true) |
"""

from __future__ import annotations

import base64
import binascii
import logging

import numpy as np
from dash import dcc, html

from components.common import notice
from components.map_figure import LocatedPoint
from components.neighbors import NeighborPanel, neighbor_records
from components.properties import formula_children
from ml.service import DEFAULT_VIEW

log = logging.getLogger(__name__)


class UploadError(ValueError):
    """An upload that cannot be read as text (empty, too large, binary, bad encoding)."""


def decode_upload(contents: str | None, max_bytes: int) -> str:
    """The text of one ``dcc.Upload`` file (``"data:<type>;base64,<payload>"``).

    Raises:
        UploadError: empty, larger than ``max_bytes``, not base64, or binary.
    """
    if not contents:
        raise UploadError("the file is empty")
    _, _, payload = contents.partition(",")
    if len(payload) * 3 // 4 > max_bytes + 3:  # refuse before decoding a huge payload
        raise UploadError(f"the file is larger than the {max_bytes / 1e6:g} MB limit")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise UploadError("the upload could not be decoded") from error
    if not raw.strip():
        raise UploadError("the file is empty")
    if len(raw) > max_bytes:
        raise UploadError(f"the file is {len(raw) / 1e6:.1f} MB, more than the {max_bytes / 1e6:g} MB limit")
    if b"\x00" in raw[:8192]:
        raise UploadError("this is a binary file, not a CIF (a CIF is plain text)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def locate_upload(atlas, contents: str | None, filename: str, key: str, max_bytes: int, k: int) -> dict:
    """Decode one upload, place it with ``atlas.locate`` and return its result dict.

    Unreadable input (``ValueError``: :class:`UploadError`, ``CifError``,
    ``FeaturisationError``) gives ``ok=False`` with the error's message. Any other failure of
    one file (the model cannot be loaded …) is logged with its traceback and reported for that
    file only, so the other files of the batch are still placed and the server keeps serving.
    """
    try:
        text = decode_upload(contents, max_bytes)
    except UploadError as error:
        return {"key": key, "filename": filename or "upload", "ok": False, "message": str(error)}
    return place_cif_result(atlas, text, filename, key, k)


def place_cif_result(atlas, cif_text: str, filename: str, key: str, k: int) -> dict:
    """Place one CIF text with ``atlas.locate`` and return its result dict (the failures as in
    :func:`locate_upload`); the latent explorer places its generated structures with it."""
    base = {"key": key, "filename": filename or "upload"}
    try:
        located = atlas.locate(cif_text, k=k)
    except ValueError as error:
        return {**base, "ok": False, "message": str(error)}
    except Exception as error:
        log.exception("locating %s failed", filename)
        return {**base, "ok": False, "message": f"could not place this structure ({type(error).__name__}: {error})"}
    table = located.neighbors
    return {
        **base,
        "ok": True,
        "message": None,
        "formula": str(located.formula),
        "x": float(located.x),
        "y": float(located.y),
        # the XRD-embedding map's position (None when the build has no XRD map)
        "x_xrd": None if located.x_xrd is None else float(located.x_xrd),
        "y_xrd": None if located.y_xrd is None else float(located.y_xrd),
        "notes": [str(note) for note in getattr(located, "notes", ())],
        "columns": list(table.columns),
        "rows": neighbor_records(table),
    }


def located_points(results: list[dict], row_of, view: str = DEFAULT_VIEW) -> list[LocatedPoint]:
    """Map markers of the placed results on the ``view`` map (failed ones, and ones without a
    position on that map, are left out); ``row_of(material_id)`` gives a neighbour's row in
    the materials table (ids it does not know are skipped)."""
    x_key, y_key = ("x", "y") if view == DEFAULT_VIEW else (f"x_{view}", f"y_{view}")
    points = []
    for result in results:
        if not result.get("ok") or result.get(x_key) is None:
            continue
        rows = []
        for record in result.get("rows", []):
            try:
                rows.append(row_of(record["material_id"]))
            except KeyError:
                continue
        points.append(
            LocatedPoint(
                label=f"{result['filename']} ({result['formula']})",
                x=result[x_key],
                y=result[y_key],
                neighbor_rows=np.asarray(rows, dtype=np.int64),
            )
        )
    return points


def result_card(result: dict, color: str | None = None) -> html.Div:
    """One uploaded file: its formula, position, notes (approximations, anything unusual) and
    neighbour grid, or why it failed; ``color`` is its star's colour on the map."""
    if not result.get("ok"):
        return html.Div(
            className="card card--error located-card",
            children=[
                html.Div([html.Strong(result["filename"]), html.Span(" could not be placed", className="muted")],
                         className="located-card__title"),
                html.P(result["message"], className="error-text located-card__message"),
            ],
        )
    stem = result["filename"].rsplit(".", 1)[0] or "upload"
    table_rows = result["rows"]
    return html.Div(
        className="card located-card",
        children=[
            html.Div(
                className="located-card__title",
                children=[
                    html.Span("★", className="located-card__star", style={"color": color or "inherit"}),
                    html.Strong(result["filename"]),
                    html.Span(" → ", className="muted"),
                    html.Span(formula_children(result["formula"]), className="formula"),
                    html.Span(f"  map position ({result['x']:.1f}, {result['y']:.1f})", className="muted"),
                ],
            ),
            html.P(
                [
                    f"{len(table_rows)} nearest materials in the embedding; nearest: ",
                    dcc.Link(table_rows[0]["material_id"], href=f"/material/{table_rows[0]['material_id']}")
                    if table_rows else "none",
                ],
                className="muted",
            ),
            *[notice(f"Note: {note}.", "warning") for note in result.get("notes") or []],
            NeighborPanel(
                aio_id=f"located-{result['key']}",
                rows=table_rows,
                columns=result["columns"],
                filename=f"{stem}_neighbors.csv",
                height="320px",
            ),
        ],
    )
