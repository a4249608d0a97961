"""The lock file (``requirements.txt``, compiled by pip-tools) matches the dependency ranges of
``pyproject.toml``: every declared dependency is pinned to one exact version inside its range,
and every pin is exact. A range edited without refreshing the lock fails here."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        assert not line.startswith("-"), f"index or find-links options belong in pip's configuration, not the lock: {line}"
        requirement = Requirement(line)
        (specifier,) = requirement.specifier  # exactly one
        assert specifier.operator == "==", f"not an exact pin: {line}"
        pins[canonicalize_name(requirement.name)] = Version(specifier.version)
    return pins


def test_every_declared_dependency_is_pinned_inside_its_range():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = _pins()
    assert len(pins) > len(declared)  # the transitive dependencies are locked too
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is declared in pyproject.toml but not in the lock: refresh it"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{requirement.name} {pins[name]} in the lock is outside {requirement.specifier}: refresh the lock")


def test_the_packages_installed_without_dependencies_are_pinned_exactly():
    for line in (ROOT / "requirements-nodeps.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert "==" in line, f"not an exact pin: {line}"
