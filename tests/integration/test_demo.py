"""The README's `scripts/demo`, run as a new user runs it, on a broker that has never seen the
project (a fresh data folder, no topics): the English transcript, its Portuguese translation and
its speech line appear, and `scripts/stop` stops everything (issue 22: four of seven first runs
printed nothing).

It runs in a copy of the repository's files (the venv, the Kafka jars and the other fetched
tools linked in), with its own broker name and ports, so a developer's own demo is left alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import httpx

from tests.conftest import free_port_pair
from tests.pipeline import REPO_ROOT, free_port

LINKED = [".venv", ".local/kafka/libs", ".local/apicurio", ".local/bin"]


def repository_copy(target):
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for name in LINKED:
        if (REPO_ROOT / name).exists():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).symlink_to(REPO_ROOT / name)
    return target


def test_the_demo_prints_each_stage_on_a_fresh_broker_and_stop_stops_it(tmp_path):
    copy = repository_copy(tmp_path / "callstt")
    ports = {"CALLSTT_WEB_PORT": free_port(), "CALLSTT_TRANSLATOR_WEB_PORT": free_port(),
             "CALLSTT_SPEAKER_WEB_PORT": free_port(), "CALLSTT_GATEWAY_PORT": free_port()}
    env = {key: value for key, value in os.environ.items() if not key.startswith("CALLSTT_")}
    env.update({key: str(value) for key, value in ports.items()})
    env.update({"CALLSTT_DEMO_KAFKA_NAME": f"demo-test-{os.getpid()}", "CALLSTT_DEMO_KAFKA_PORT": str(free_port_pair())})
    try:
        demo = subprocess.run(["scripts/demo"], cwd=copy, env=env, capture_output=True, text=True, timeout=900)
        output = demo.stdout + demo.stderr
        assert demo.returncode == 0, output[-4000:]
        lines = output.splitlines()
        english = [line for line in lines if "demo-en-" in line and " en " in line and "book a table" in line]
        assert english, output[-4000:]
        translated = [line for line in lines if "demo-en-" in line and "en->pt" in line]
        assert translated and "mesa" in translated[0], output[-4000:]
        spoken = [line for line in lines if "demo-en-" in line and "caller>pt" in line and "chunks" in line]
        assert spoken, output[-4000:]
        gateway = f"127.0.0.1:{ports['CALLSTT_GATEWAY_PORT']}"
        assert f"ws://{gateway}/v1/listen" in output and f"http://{gateway}/listen" in output, output[-4000:]
        assert httpx.get(f"http://{gateway}/health", timeout=5).json()["status"] == "ok"
    finally:
        stopped = subprocess.run(["scripts/stop"], cwd=copy, env=env, capture_output=True, text=True, timeout=180)
    assert stopped.returncode == 0, stopped.stderr
    for name in ("worker", "translator", "speaker", "gateway"):
        assert f"{name} stopped" in stopped.stderr, stopped.stderr
        assert not (copy / ".local" / f"{name}.pid").exists()
    time.sleep(1)
    for port in ports.values():
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        except httpx.HTTPError:
            continue
        raise AssertionError(f"something still answers on port {port} after scripts/stop")
    subprocess.run([str(copy / ".venv/bin/python"), "scripts/kafka_local.py", "stop", "--wipe", "--name",
                    env["CALLSTT_DEMO_KAFKA_NAME"], "--port", env["CALLSTT_DEMO_KAFKA_PORT"]], cwd=copy, timeout=120)
