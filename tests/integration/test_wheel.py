"""What `pip install callstt` gets: the wheel built from this checkout, file by file.

One import root (callstt/), so installing callstt shadows no package of the user's; the
product (processes, client library, models, schemas, worker pages); not the bench, its corpora,
its worker subprocesses or the local broker helpers, which run from a checkout (setup.py)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKOUT_ONLY = ("callstt/streams/bench/", "callstt/infra/local/")


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory) -> dict[str, bytes]:
    # Built from a copy of the checkout's files (tracked and new, not ignored): a build in place
    # would reuse build/ from an earlier one, files since deleted included.
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO_ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True, timeout=300)
    [wheel] = out.glob("callstt-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_everything_installs_under_one_import_root(wheel_files):
    tops = {name.split("/")[0] for name in wheel_files}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"callstt"}
    assert not any(name.startswith("callstt/tests/") for name in wheel_files)
    [entry_points] = [data for name, data in wheel_files.items() if name.endswith(".dist-info/entry_points.txt")]
    assert "callstt = callstt.streams.cli:main" in entry_points.decode()


def test_the_product_is_in_it(wheel_files):
    for expected in ("callstt/streams/client/producer.py", "callstt/streams/client/reader.py",
                     "callstt/schemas/records.py", "callstt/schemas/codec.py", "callstt/schemas/transcript.avsc",
                     "callstt/schemas/registry.json", "callstt/streams/worker/live.html", "callstt/streams/cli.py",
                     "callstt/models/asr/faster_whisper_backend.py", "callstt/streams/model_routes.py"):
        assert expected in wheel_files, expected


def test_no_bench_corpus_or_test_harness_and_nothing_shipped_needs_them(wheel_files):
    assert [name for name in wheel_files if name.startswith(CHECKOUT_ONLY)] == []
    assert not any("nonspeech" in name or "rare_words" in name or "subprocesses" in name for name in wheel_files)
    importers = set()
    for name, data in wheel_files.items():
        if name.endswith(".py"):
            for node in ast.walk(ast.parse(data)):
                modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if any(module.startswith(("callstt.streams.bench", "callstt.infra.local")) for module in modules):
                    importers.add(name)
    # Only `callstt bench` and `callstt soak` reach for them, after require_checkout says where they are.
    assert importers == {"callstt/streams/cli.py"}


def test_bench_from_an_installed_package_says_where_it_runs(monkeypatch):
    """Installed from the wheel (no bench there), `callstt bench` fails in one line, not a traceback."""
    import importlib.util

    from callstt.streams.cli import CliFailure, require_checkout

    require_checkout("bench")  # this checkout has it
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "callstt.streams.bench" else real_find_spec(name, *rest))
    with pytest.raises(CliFailure, match="`callstt bench` runs from a source checkout"):
        require_checkout("bench")
