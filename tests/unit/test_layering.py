"""The packages' dependency order: schemas <- models <- streams (an arrow points at what may import it).

schemas imports nothing of the project but itself, models imports schemas (never streams), and the
settings object, the bottom of streams, imports no model code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def project_imports(path: Path) -> set[str]:
    """The top-level project packages a file imports (anywhere in it, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & {"schemas", "models", "streams", "infra", "scripts", "tests"}


@pytest.mark.parametrize("package, allowed", [("schemas", {"schemas"}), ("models", {"schemas", "models"})])
def test_a_package_imports_only_the_packages_below_it(package, allowed):
    offenders = {str(path.relative_to(ROOT)): sorted(project_imports(path) - allowed)
                 for path in sorted((ROOT / package).rglob("*.py")) if project_imports(path) - allowed}
    assert offenders == {}


def test_settings_import_no_model_code():
    assert project_imports(ROOT / "streams" / "settings.py") <= {"schemas"}
