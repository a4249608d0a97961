"""3D crystal structures: crystal-toolkit builds the scene, dash-mp-components draws it.

Every use of crystal-toolkit and dash-mp-components in the app lives in this module, so that
their breakages with new pymatgen / Dash releases stay here.

Compatibility notes (crystal-toolkit 2026.7.20, dash-mp-components 0.5.2, Dash 4.4,
pymatgen 2026.10):

- ``import crystal_toolkit`` runs its package ``__init__``, which imports IPython,
  flask-caching, emmet / mp-api and its Dash-3 component framework (declared ``dash<4``).
  We need none of that: only the pure scene builders (``core.scene``, ``core.legend`` and
  ``renderables.{site, lattice, structure, structuregraph}``). :func:`_scene_modules` loads
  those modules alone by registering empty parent packages that point at crystal-toolkit's
  folders. It does so only when the first structure is drawn, never at import, and leaves a
  fully imported crystal-toolkit alone if something else already loaded it.
- Importing the renderables attaches ``get_scene`` to pymatgen's ``Structure``, ``Site``,
  ``Lattice`` and ``StructureGraph`` (crystal-toolkit's own design); we call them only here.
- ``Scene.to_json()`` leaves numpy arrays inside; :func:`_plain` turns them into lists.
- ``Legend`` needs ``webcolors`` (installed; not a dependency of ours otherwise).

- ``CrystalToolkitScene`` fails on ``data=None`` (it reads ``data.origin``): it always gets
  a scene, :func:`empty_scene` until a structure is drawn. Its canvas keeps a square of
  ``sceneSize`` pixels; a percentage size let its wrapper push the canvas out of view.

The viewer is the All-in-One component :class:`StructureView`: a ``CrystalToolkitScene``, an
element legend and a "show" checklist wired to the scene's ``toggleVisibility`` by a
module-level client-side ``MATCH`` callback (``matmap.sceneVisibility`` in
``assets/matmap.js``).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import types
import warnings

import dash_mp_components as mpc
import numpy as np
from dash import MATCH, ClientsideFunction, Input, Output, clientside_callback, dcc, html

log = logging.getLogger(__name__)

#: Scene parts the "show" checklist toggles, with their labels (names used by crystal-toolkit).
TOGGLES = {"bonds": "bonds", "polyhedra": "polyhedra", "unit_cell": "unit cell"}
DEFAULT_SHOWN = ("bonds", "unit_cell")
#: Cells larger than this are bonded with the cheap minimum-distance rule instead of CrystalNN.
CRYSTALNN_MAX_SITES = 80
#: Scene settings passed to ``CrystalToolkitScene`` (copied per component).
#: An empty scene: ``CrystalToolkitScene`` fails on ``data=None``, so it gets this until a
#: structure is drawn.
EMPTY_SCENE = {"name": "empty", "contents": [], "origin": [0.0, 0.0, 0.0], "visible": True}
SCENE_SETTINGS = {"renderer": "webgl", "extractAxis": True, "defaultZoom": 1.4, "transparentBackground": True}


class StructureViewError(RuntimeError):
    """crystal-toolkit could not build a scene for this structure."""


_import_lock = threading.RLock()


def preload() -> None:
    """Import crystal-toolkit's scene modules and pymatgen's diffraction module now, once.

    Call it before callbacks that draw structures and XRD patterns can run in parallel
    threads (the material page does, from its layout): both import ``palettable``, and two
    threads importing it for the first time at once die with ``_DeadlockError``.
    """
    with _import_lock:
        _scene_modules()
        import pymatgen.analysis.diffraction.xrd  # noqa: F401  (imports palettable too)


def _scene_modules():
    """crystal-toolkit's ``Legend``, ``Scene`` and the renderables, without its package ``__init__``."""
    with _import_lock:
        return _load_scene_modules()


def _load_scene_modules():
    if "crystal_toolkit" not in sys.modules:
        spec = importlib.util.find_spec("crystal_toolkit")
        if spec is None or not spec.submodule_search_locations:
            raise StructureViewError("crystal-toolkit is not installed")
        root = list(spec.submodule_search_locations)[0]
        for name, folder in (
            ("crystal_toolkit", root),
            ("crystal_toolkit.core", f"{root}/core"),
            ("crystal_toolkit.renderables", f"{root}/renderables"),
        ):
            package = types.ModuleType(name)
            package.__path__ = [folder]
            package.__package__ = name
            sys.modules[name] = package
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # crystal-toolkit imports scipy.spatial.qhull
        from crystal_toolkit.core.legend import Legend
        from crystal_toolkit.core.scene import Scene
        from crystal_toolkit.renderables import lattice, site, structure, structuregraph  # noqa: F401  (attach get_scene)

    return Legend, Scene


def _plain(value):
    """A JSON-ready copy of a scene dict: numpy arrays and scalars become lists and floats."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _bonded_graph(structure):
    """A pymatgen ``StructureGraph`` with bonds (CrystalNN, or minimum distance for big cells),
    or ``None`` when no bonding rule works on this structure."""
    from pymatgen.analysis.graphs import StructureGraph
    from pymatgen.analysis.local_env import CrystalNN, MinimumDistanceNN

    build = getattr(StructureGraph, "from_local_env_strategy", None) or StructureGraph.with_local_env_strategy
    strategies = [MinimumDistanceNN()] if len(structure) > CRYSTALNN_MAX_SITES else [CrystalNN(), MinimumDistanceNN()]
    for strategy in strategies:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return build(structure, strategy)
        except Exception as error:  # pymatgen's bonding rules raise many kinds on odd cells
            log.info("bonding with %s failed: %s", type(strategy).__name__, error)
    return None


def structure_scene(structure, bonds: bool = True) -> tuple[dict, dict[str, str]]:
    """The ``CrystalToolkitScene`` JSON and the element colours of a pymatgen ``Structure``.

    Args:
        structure: an ordered or disordered pymatgen ``Structure`` (not modified).
        bonds: compute bonds and coordination polyhedra (CrystalNN up to
            :data:`CRYSTALNN_MAX_SITES` sites, minimum distance above).

    Returns:
        ``(scene, colors)``: the scene as plain JSON (contents named ``atoms``, ``bonds``,
        ``polyhedra``, ``unit_cell``, ``axes`` …, lengths in Å) and ``{element: "#rrggbb"}``
        from crystal-toolkit's VESTA colour scheme.

    Raises:
        StructureViewError: crystal-toolkit is missing or fails on this structure.
    """
    Legend, _Scene = _scene_modules()
    from pymatgen.core import Structure

    try:
        # crystal-toolkit's own preprocessing: fractional coordinates wrapped into [0, 1)
        data = structure.as_dict(verbosity=0)
        for site in data["sites"]:
            site["abc"] = np.mod(site["abc"], 1).tolist()
        structure = Structure.from_dict(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            legend = _vesta_legend(Legend, structure)
            graph = _bonded_graph(structure) if bonds else None
            if graph is not None:
                scene = graph.get_scene(
                    draw_image_atoms=True,
                    bonded_sites_outside_unit_cell=False,
                    hide_incomplete_edges=True,
                    legend=legend,
                )
            else:
                scene = structure.get_scene(legend=legend, draw_image_atoms=True)
            scene.name = "matmap-structure"
            axes = structure.lattice._axes_from_lattice()
            scene.contents.append(axes)
            scene_json = _plain(scene.to_json())
            colors = _legend_colors(legend)
    except StructureViewError:
        raise
    except Exception as error:  # crystal-toolkit internals: report, never crash the page
        raise StructureViewError(f"could not draw this structure: {type(error).__name__}: {error}") from error
    return scene_json, colors


class StructureView(html.Div):
    """All-in-One 3D viewer: scene, element legend and a checklist of scene parts to show.

    Fill it by giving ``scene`` / ``colors`` (from :func:`structure_scene`) at construction or
    by a page callback writing ``data`` of :meth:`ids.scene` and ``children`` of
    :meth:`ids.legend`.

    Args:
        aio_id: unique id of this viewer on its page.
        scene, colors: the scene JSON and element colours (default: an empty scene).
        scene_size: side of the square canvas, px.
    """

    class ids:
        @staticmethod
        def scene(aio_id: str) -> dict:
            return {"component": "StructureView", "subcomponent": "scene", "aio_id": aio_id}

        @staticmethod
        def legend(aio_id: str) -> dict:
            return {"component": "StructureView", "subcomponent": "legend", "aio_id": aio_id}

        @staticmethod
        def show(aio_id: str) -> dict:
            return {"component": "StructureView", "subcomponent": "show", "aio_id": aio_id}


    def __init__(self, aio_id: str, scene: dict | None = None, colors: dict[str, str] | None = None, scene_size: int = 420):
        super().__init__(
            className="structure-view",
            children=[
                html.Div(
                    className="structure-view__canvas",
                    style={"height": f"{scene_size}px"},
                    children=mpc.CrystalToolkitScene(
                        id=self.ids.scene(aio_id),
                        data=scene or empty_scene(),
                        settings=dict(SCENE_SETTINGS),
                        axisView="SW",
                        sceneSize=scene_size,
                        showControls=False,
                        showExpandButton=True,
                        showImageButton=True,
                        showExportButton=False,
                        showPositionButton=False,
                        toggleVisibility=visibility(DEFAULT_SHOWN),
                        className="structure-view__scene",
                    ),
                ),
                html.Div(
                    className="structure-view__footer",
                    children=[
                        html.Div(legend_chips(colors or {}), id=self.ids.legend(aio_id), className="structure-view__legend"),
                        dcc.Checklist(
                            id=self.ids.show(aio_id),
                            options=[{"label": label, "value": key} for key, label in TOGGLES.items()],
                            value=list(DEFAULT_SHOWN),
                            inline=True,
                            className="structure-view__toggles",
                        ),
                    ],
                ),
            ],
        )


def _vesta_legend(Legend, structure):
    """crystal-toolkit's ``Legend`` of a structure: VESTA colours, uniform radii."""
    return Legend(structure, color_scheme="VESTA", radius_scheme="uniform")


def _legend_colors(legend) -> dict[str, str]:
    """``{element: "#rrggbb"}`` of a ``Legend`` (it lists them colour first)."""
    return {label: color for color, label in legend.get_legend()["colors"].items()}


def element_colors(structure) -> dict[str, str]:
    """``{element: "#rrggbb"}`` of a pymatgen ``Structure``'s elements in crystal-toolkit's VESTA
    scheme (the colours of :func:`structure_scene`), without building a scene.

    Raises:
        StructureViewError: crystal-toolkit is missing or fails on this structure.
    """
    Legend, _Scene = _scene_modules()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _legend_colors(_vesta_legend(Legend, structure))
    except Exception as error:  # crystal-toolkit internals: report, never crash the page
        raise StructureViewError(f"no colours for this structure: {type(error).__name__}: {error}") from error


def empty_scene() -> dict:
    """A fresh copy of :data:`EMPTY_SCENE` (what to show when there is no structure)."""
    return {**EMPTY_SCENE, "origin": list(EMPTY_SCENE["origin"]), "contents": []}


def visibility(shown) -> dict[str, int]:
    """``toggleVisibility`` of the scene: 1 for each part of :data:`TOGGLES` in ``shown``, else 0."""
    shown = set(shown or [])
    return {key: int(key in shown) for key in TOGGLES}


def legend_chips(colors: dict[str, str]) -> list:
    """One coloured chip per element (``{element: "#rrggbb"}``)."""
    return [
        html.Span([html.Span(className="chip__dot", style={"background": color}), element], className="chip")
        for element, color in colors.items()
    ]


# Shows / hides scene parts in the browser; same keys as visibility() (TOGGLES).
clientside_callback(
    ClientsideFunction(namespace="matmap", function_name="sceneVisibility"),
    Output(StructureView.ids.scene(MATCH), "toggleVisibility"),
    Input(StructureView.ids.show(MATCH), "value"),
    prevent_initial_call=True,
)
