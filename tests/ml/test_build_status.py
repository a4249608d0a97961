"""The announcement of a background build: seen while its process holds the lock, never after."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ml.build_status import VOXEL_STORE, XRD_MAP, BuildRunning, announce, current


def test_a_build_is_seen_while_it_runs_and_not_after(tmp_path):
    assert current("mp2024", root=tmp_path) is None
    with announce("mp2024", [XRD_MAP, VOXEL_STORE], log="data/logs/build-mp2024.log", root=tmp_path) as build:
        seen = current("mp2024", root=tmp_path)
        assert seen["pending"] == [XRD_MAP, VOXEL_STORE] and seen["log"] == "data/logs/build-mp2024.log"
        build.stage("XRD map")
        build.done(XRD_MAP)
        seen = current("mp2024", root=tmp_path)
        assert seen["pending"] == [VOXEL_STORE] and seen["stage"] == "XRD map"
        assert current("mp2024-icsd", root=tmp_path) is None  # per dataset
        with pytest.raises(BuildRunning, match="already running"):
            with announce("mp2024", [XRD_MAP], root=tmp_path):
                pass
    assert current("mp2024", root=tmp_path) is None


def test_a_killed_build_is_not_reported(tmp_path):
    """The kernel releases the lock of a killed process: its leftover description is ignored."""
    code = (f"import sys, time; sys.path.insert(0, {str(__import__('ml').__path__[0] + '/..')!r})\n"
            "from pathlib import Path\nfrom ml.build_status import announce\n"
            f"with announce('mp2024', ['xrd map'], root=Path({str(tmp_path)!r})):\n"
            "    print('held', flush=True); time.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        assert current("mp2024", root=tmp_path)["pid"] == process.pid
    finally:
        process.kill()
        process.wait()
    assert (tmp_path / "mp2024" / "building.json").is_file()  # left behind by the killed build
    assert current("mp2024", root=tmp_path) is None
