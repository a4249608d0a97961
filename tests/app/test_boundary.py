"""pages/ and components/ may import from ``ml`` only the artifacts interface and settings.

``ml.generation.explorer`` is the one other door: the latent explorer page (``/generate``) needs the
trained generator, and this facade imports torch only inside its functions and returns plain
dicts, CIF text and zip bytes."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"ml.mapping.artifacts", "ml.settings", "ml.generation.explorer"}


def forbidden_ml_imports(source: str) -> list[str]:
    """The ``ml`` modules a Python source imports that are not in :data:`ALLOWED`."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # from ml import artifacts, locate / from ml.generation import explorer: the submodules named
            modules = [f"{node.module}.{alias.name}" if node.module == "ml" or f"{node.module}.{alias.name}" in ALLOWED
                       else node.module for alias in node.names]
        else:
            continue
        bad += [m for m in modules if (m == "ml" or m.startswith("ml.")) and m not in ALLOWED]
    return bad


def app_sources() -> list[Path]:
    return sorted([*ROOT.joinpath("pages").rglob("*.py"), *ROOT.joinpath("components").rglob("*.py")])


def test_checker_catches_every_form():
    source = """
import ml
import ml.mapping.locate
from ml import settings, structures
from ml.features.errors import FeaturisationError
from ml.mapping.artifacts import MapArtifacts
from ml.settings import get_settings
import mlflow
from . import ml
def f():
    from ml.features.xrd import xrd_pattern
"""
    assert forbidden_ml_imports(source) == ["ml", "ml.mapping.locate", "ml.structures", "ml.features.errors", "ml.features.xrd"]


def test_pages_and_components_use_only_the_artifacts_interface():
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


def test_importing_the_app_imports_no_heavy_library():
    """The app module (every page and component registered) loads without torch, scikit-learn,
    openTSNE or pymatgen: they are imported where a request needs them (or by the warm-up thread a
    server starts), so a worker starts fast and a page that needs none never pays for them.
    Checked in a fresh interpreter, since this test process has imported them all already."""
    import json
    import subprocess
    import sys

    heavy = ["torch", "torch_geometric", "sklearn", "openTSNE", "pymatgen.core", "crystal_toolkit", "faiss"]
    probe = ("import json, sys; import app; "
             f"print(json.dumps([m for m in {heavy!r} if m in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
