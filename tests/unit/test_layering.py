"""The packages' dependency order: schemas <- models <- streams (an arrow points at what may import it).

schemas imports nothing of the project but itself, models imports schemas (never streams), and the
settings object, the bottom of streams, imports no model code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a file imports (anywhere in it, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def project_imports(path: Path) -> set[str]:
    return imported_packages(path) & {"schemas", "models", "streams", "infra", "scripts", "tests"}


@pytest.mark.parametrize("package, allowed", [("schemas", {"schemas"}), ("models", {"schemas", "models"})])
def test_a_package_imports_only_the_packages_below_it(package, allowed):
    offenders = {str(path.relative_to(ROOT)): sorted(project_imports(path) - allowed)
                 for path in sorted((ROOT / package).rglob("*.py")) if project_imports(path) - allowed}
    assert offenders == {}


def test_settings_import_no_model_code():
    assert project_imports(ROOT / "streams" / "settings.py") <= {"schemas"}


def test_the_pipeline_core_knows_neither_kafka_nor_faust():
    clients = {"faust", "mode", "aiokafka", "confluent_kafka"}
    offenders = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & clients)
                 for path in sorted((ROOT / "streams" / "core").rglob("*.py")) if imported_packages(path) & clients}
    assert offenders == {}
    assert project_imports(ROOT / "streams" / "core" / "pipeline.py") <= {"schemas", "models", "streams"}


def test_the_installed_package_never_imports_the_test_harness():
    offenders = [str(path.relative_to(ROOT)) for folder in ("streams", "models", "schemas", "infra")
                 for path in sorted((ROOT / folder).rglob("*.py")) if "tests" in project_imports(path)]
    assert offenders == []


def imported_model_roles(path: Path) -> set[str]:
    """The `models` subpackages (roles) a file imports, lazy imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
        found |= {name.split(".")[1] for name in names if name.startswith("models.") and name.count(".") >= 1}
    return found


# Each role may use those below it: audio <- text <- asr, audio <- voices (espeak speech, which the
# PhoWhisper conversion speaks to check itself: asr <- voices); translation stands alone.
MODEL_ROLES = {"audio": {"audio"}, "text": {"text", "audio"}, "voices": {"voices", "audio"},
               "asr": {"asr", "text", "audio", "voices"}, "translation": {"translation"}}


def test_models_is_one_subpackage_per_role_each_importing_only_the_roles_below_it():
    assert [path.name for path in (ROOT / "models").glob("*.py")] == ["__init__.py"]  # no file without a role
    assert {path.name for path in (ROOT / "models").iterdir() if path.is_dir() and path.name != "__pycache__"} == \
        set(MODEL_ROLES)
    offenders = {str(path.relative_to(ROOT)): sorted(imported_model_roles(path) - allowed)
                 for role, allowed in MODEL_ROLES.items() for path in sorted((ROOT / "models" / role).rglob("*.py"))
                 if imported_model_roles(path) - allowed}
    assert offenders == {}
