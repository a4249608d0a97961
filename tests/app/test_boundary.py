"""pages/ and components/ import from ``ml`` only its service and settings.

:mod:`ml.service` (the package and its modules) is the one door: the loaded map, placing a CIF,
the latent explorer's generator jobs, the concept forest and the element maps, torch-free at
import, plain data out; :mod:`ml.settings`
holds the settings both sides read. Anything else of ``ml`` (``ml.mapping``, ``ml.generation`` …)
is reached through the service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"ml.service", "ml.settings"}


def allowed(module: str) -> bool:
    """``ml.service``, its modules (``ml.service.explorer``) and ``ml.settings``."""
    return module in ALLOWED or module.startswith("ml.service.")


def forbidden_ml_imports(source: str) -> list[str]:
    """The ``ml`` modules a Python source imports that are not :func:`allowed`."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "ml":  # from ml import service, locate
                modules = [f"ml.{alias.name}" for alias in node.names]
            else:
                modules = [node.module]
        else:
            continue
        bad += [m for m in modules if (m == "ml" or m.startswith("ml.")) and not allowed(m)]
    return bad


def app_sources() -> list[Path]:
    return sorted([*ROOT.joinpath("pages").rglob("*.py"), *ROOT.joinpath("components").rglob("*.py")])


def test_checker_catches_every_form():
    source = """
import ml
import ml.mapping.locate
import ml.service.explorer
from ml import service, structures
from ml.service import LoadedMap, explorer
from ml.service.explorer import ABSOLUTE_GATES
from ml.features.errors import FeaturisationError
from ml.mapping.artifacts import MapArtifacts
from ml.mapping import artifacts
from ml.settings import get_settings
from ml.services import LoadedMap
import mlflow
from . import ml
def f():
    from ml.features.xrd import xrd_pattern
"""
    assert forbidden_ml_imports(source) == ["ml", "ml.mapping.locate", "ml.structures", "ml.features.errors",
                                            "ml.mapping.artifacts", "ml.mapping", "ml.services", "ml.features.xrd"]


def test_pages_and_components_use_only_the_service():
    sources = app_sources()
    assert {p.parent.name for p in sources} == {"pages", "components"}
    offenders = {str(p.relative_to(ROOT)): bad for p in sources if (bad := forbidden_ml_imports(p.read_text()))}
    assert offenders == {}, f"import from ml only {sorted(ALLOWED)}: {offenders}"


def test_pages_never_import_the_app():
    for path in ROOT.joinpath("pages").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            assert "app" not in names, f"{path.name} imports app"


SERVICE_MODULES = sorted(f"ml.service.{p.stem}" for p in ROOT.joinpath("ml", "service").glob("*.py") if p.stem != "__init__")


def test_every_service_module_is_checked():
    assert {"ml.service.explorer", "ml.service.concepts", "ml.service.element_maps"} <= set(SERVICE_MODULES)


@pytest.mark.parametrize("statement", ["import app", "import ml.service, " + ", ".join(SERVICE_MODULES)])
def test_importing_the_app_imports_no_heavy_library(statement):
    """The app module (every page and component registered), and the service it reaches ml by,
    load without torch, scikit-learn, openTSNE or pymatgen: they are imported where a request
    needs them (or by the warm-up thread a server starts), so a worker starts fast and a page
    that needs none never pays for them. Checked in a fresh interpreter, since this test process
    has imported them all already."""
    import json
    import subprocess
    import sys

    heavy = ["torch", "torch_geometric", "sklearn", "openTSNE", "pymatgen.core", "crystal_toolkit", "faiss"]
    probe = (f"import json, sys; {statement}; "
             f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
