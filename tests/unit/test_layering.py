"""The packages' dependency order: schemas <- models <- streams (an arrow points at what may import it).

schemas imports nothing of the project but itself, models imports schemas (never streams), and the
settings object, the bottom of streams, imports no model code. Everything is imported through the
`callstt` root (callstt.streams, callstt.models, ...: setup.py), which the checks below strip.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALLED = ("streams", "models", "schemas", "infra")  # the folders installed under `callstt.`


def imported_names(path: Path) -> list[str]:
    """The modules a file imports (anywhere in it, lazy imports included), as written."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def unrooted(name: str) -> str:
    """"callstt.streams.client" -> "streams.client": the project's modules by their folders."""
    return name.removeprefix("callstt.")


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a file imports (the project's by their folder: streams, models...)."""
    return {unrooted(name).split(".")[0] for name in imported_names(path)}


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


def test_the_core_takes_typed_configuration_not_the_settings_or_a_client():
    """streams/core/ imports of streams/ only itself: streams/core_from_settings.py reads the
    settings for it, and the Kafka clients stay outside."""
    offenders = {str(path.relative_to(ROOT)): outside
                 for path in sorted((ROOT / "streams" / "core").rglob("*.py"))
                 if (outside := sorted(name for name in map(unrooted, imported_names(path))
                                       if name.startswith("streams.") and not name.startswith("streams.core")))}
    assert offenders == {}


def test_the_installed_package_never_imports_the_test_harness():
    offenders = [str(path.relative_to(ROOT)) for folder in ("streams", "models", "schemas", "infra")
                 for path in sorted((ROOT / folder).rglob("*.py")) if "tests" in project_imports(path)]
    assert offenders == []


def imported_model_roles(path: Path) -> set[str]:
    """The `models` subpackages (roles) a file imports, lazy imports included."""
    names = [unrooted(name) for name in imported_names(path)]
    return {name.split(".")[1] for name in names if name.startswith("models.")}


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


def module_graph() -> dict[str, set[str]]:
    """Each installed module (streams, models, schemas, infra) -> the project modules it imports,
    imports inside functions included (they run as surely, only later)."""
    modules = {}
    for package in ("streams", "models", "schemas", "infra"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path

    def known(name: str) -> str | None:  # "callstt.streams.client.kafka.avro_codec" -> "streams.client.kafka"
        name = unrooted(name)
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            graph[name] |= {found for target in targets if (found := known(target)) not in (None, name)}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each strongly connected group of more than one node (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_through_others():
    assert circles(module_graph()) == []


def test_no_circle_between_the_streams_subpackages():
    """streams/client, core, worker, speech, translation, bench...: one direction between any two."""
    packages: dict[str, set[str]] = {}
    for module, targets in module_graph().items():
        if module.startswith("streams."):
            package = ".".join(module.split(".")[:2])
            packages.setdefault(package, set()).update(
                ".".join(t.split(".")[:2]) for t in targets if t.startswith("streams.") and not t.startswith(package))
    assert circles(packages) == []


def test_circles_are_found():
    """The check above can fail: a circle of three and one of two are reported, a chain is not."""
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}) == \
        [["a", "b", "c"], ["d", "e"]]


def test_the_project_is_imported_only_through_the_callstt_root():
    """No file imports a bare `streams`, `models`, `schemas` or `infra` (the installed package has
    none: a bare import would work only from the repository's folder, and load a second copy)."""
    files = [path for folder in (*INSTALLED, "tests", "scripts") for path in sorted((ROOT / folder).rglob("*.py"))]
    offenders = {str(path.relative_to(ROOT)): bare for path in files
                 if (bare := sorted({name for name in imported_names(path) if name.split(".")[0] in INSTALLED}))}
    assert offenders == {}


def test_the_graph_sees_the_project_imports():
    """The circle checks above read real edges: the worker's agent imports the pipeline core."""
    assert "streams.core.pipeline" in module_graph()["streams.worker.agent"]

