"""The import-linter contracts in pyproject.toml bite: each rule, broken on purpose in a copy of the tree,
is reported by ``lint-imports``, and the tree as it is keeps every contract."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

#: A temporary module (or two) that breaks one contract, and what the report must then say (regexes).
VIOLATIONS = {
    "upward import": (
        {"app/disk/_upward.py": "from app.template.recipe import Recipe\n"},
        [
            r"Layers: .* BROKEN",
            r"app\.disk is not allowed to import app\.template",
            r"- +app\.disk\._upward -> app\.template\.recipe",
        ],
    ),
    "Qt in the engine, imported lazily": (
        {"app/catalog/_qt.py": "def window() -> None:\n    import PySide6.QtWidgets\n"},
        [
            r"The engine is Qt-free BROKEN",
            r"app\.catalog is not allowed to import PySide6",
            r"- +app\.catalog\._qt -> PySide6",
        ],
    ),
    "cycle between siblings, one side lazy": (
        {
            "app/catalog/_cycle_a.py": "from app.catalog import _cycle_b\n",
            "app/catalog/_cycle_b.py": "def back() -> None:\n    from app.catalog import _cycle_a\n",
        },
        [
            r"No import cycles, at any depth BROKEN",
            r"No cycles are allowed in app\.catalog\.",
            r"- +\._cycle_[ab] -> \._cycle_[ab]",
        ],
    ),
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of what the contracts cover: the packages and their configuration."""
    for package in ("app", "wizard_pages"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on ``tree`` (its packages first on the path, no cache, no line wrapping)."""
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} is missing: install the test extras"
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "250"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("case", VIOLATIONS)
def test_a_broken_rule_is_reported(case: str, tree: Path) -> None:
    modules, expected = VIOLATIONS[case]
    for name, text in modules.items():
        (tree / name).write_text(text)
    result = lint_imports(tree)
    report = result.stdout + result.stderr
    assert result.returncode == 1, report
    for pattern in expected:
        assert re.search(pattern, report), f"{pattern!r} not in:\n{report}"


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = lint_imports(tree)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert re.search(r"Contracts: (\d+) kept, 0 broken", report), report
