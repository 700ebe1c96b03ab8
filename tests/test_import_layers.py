"""The import-layer contract (pyproject.toml, [tool.importlinter]): imports point down only,
as ../shared/DESIGN.md draws them, and every module of ftapp has its place in a layer."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imports_point_down_only():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_every_module_has_a_layer():
    """A new top-level module must be placed in the contract, or it could import anything."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = config["tool"]["importlinter"]["contracts"]
    named = {name for layer in contract["layers"] for name in re.split(r"[|:]", layer)}
    named = {name.strip().removeprefix("ftapp.") for name in named}
    package = ROOT / "ftapp"
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {p.parent.name for p in package.glob("*/__init__.py")}
    assert modules - named == set(), "add these to a layer in pyproject.toml"
    assert named - modules == set(), "these layers name nothing"
