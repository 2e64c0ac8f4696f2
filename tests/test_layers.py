"""The layer contracts in pyproject.toml hold, and they would catch a violation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is installed by ./puter.sh test")


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports over the packages found in *tree* (copied, so the checkout's own files never change)."""
    return subprocess.run([str(LINT), "--config", str(tree / "pyproject.toml"), "--no-cache"], cwd=tree,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)


def copy_tree(to: Path) -> Path:
    for name in ("batos", "clients"):
        shutil.copytree(ROOT / name, to / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "watchdog", to / "batos_watchdog", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(ROOT / "pyproject.toml", to / "pyproject.toml")
    return to


def test_layers_hold_in_the_checkout(tmp_path: Path) -> None:
    done = lint(copy_tree(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_core_importing_cognition_breaks_the_layers(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    uvm = tree / "batos" / "core" / "uvm.py"
    uvm.write_text(uvm.read_text() + "\nfrom batos.cognition.cycle import open_cycle  # the upward import the layers forbid\n")
    done = lint(tree)
    assert done.returncode == 1
    assert "batos.core is not allowed to import batos.cognition" in done.stdout
    assert "batos.core.uvm -> batos.cognition.cycle" in done.stdout


def test_kernel_core_importing_the_loops_is_refused(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    core = tree / "batos" / "kernel" / "core.py"
    core.write_text(core.read_text() + "\nfrom batos.loops.service import Loops\n")
    done = lint(tree)
    assert done.returncode == 1
    assert "the kernel core sees only the object model and the wire" in done.stdout
