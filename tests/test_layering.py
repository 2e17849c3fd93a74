"""The core imports no Dagster, and ``import matviews_dagster`` stays Dagster-free."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "matviews_dagster" / "core"


def test_core_modules_do_not_import_dagster() -> None:
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0].startswith("dagster")]
    assert offenders == []


def test_importing_the_package_does_not_load_dagster() -> None:
    code = (
        "import sys, matviews_dagster, matviews_dagster.core.matviews;"
        "print(sorted(m for m in sys.modules if m.startswith('dagster')))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
