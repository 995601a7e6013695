"""Rules that keep the code livable, checked mechanically."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QT_MODULES = ("PySide6", "qasync", "shiboken6")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_engine_never_imports_qt() -> None:
    engine_files = [p for p in (ROOT / "app").rglob("*.py") if "gui" not in p.relative_to(ROOT / "app").parts]
    assert engine_files, "no engine modules found"
    offenders = [str(p.relative_to(ROOT)) for p in engine_files if _imports(p) & set(QT_MODULES)]
    assert offenders == []


def test_cli_imports_without_qt_loaded() -> None:
    """Running a CLI subcommand must not drag in Qt (pipelines have no display and want speed)."""
    import subprocess
    import sys

    code = "import sys, app.cli, app.disk.layout; print(any(m.startswith('PySide6') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
