"""The broker connection over SASL/SCRAM, against a real broker with a SCRAM listener; secrets stay
out of logs and web pages; the web server binds to loopback unless told otherwise."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid

import httpx
import pytest

from kafka_local import LocalKafka
from models.scoring import word_error_rate
from models.synth import ENGLISH_SENTENCES, conversation
from streams.settings import Settings
from tests.conftest import free_port_pair
from tests.pipeline import CALLSTT, WorkerProcess, by_call

pytestmark = pytest.mark.faults

USER, PASSWORD = "callstt-worker", f"pw-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def scram_broker():
    cluster = LocalKafka(name=f"test-scram-{os.getpid()}", brokers=1, port=free_port_pair(),
                         scram_users={USER: PASSWORD})
    cluster.start()
    yield cluster
    cluster.wipe()


def sasl_env(password: str = PASSWORD) -> dict[str, str]:
    return {"CALLSTT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CALLSTT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "CALLSTT_KAFKA_SASL_USERNAME": USER, "CALLSTT_KAFKA_SASL_PASSWORD": password}


def test_worker_and_clients_over_sasl_scram_keep_the_password_secret(scram_broker, tmp_path):
    bootstrap = scram_broker.sasl_bootstrap_servers
    client = Settings.from_env({**sasl_env(), "CALLSTT_KAFKA_BOOTSTRAP_SERVERS": bootstrap}).kafka_client_config()
    worker = WorkerProcess(bootstrap, tmp_path, extra_env=sasl_env(), client_config=client).start()
    try:
        call_id = f"sasl-{uuid.uuid4().hex[:6]}"
        with worker.publisher() as publisher:
            publisher.publish_call(conversation(ENGLISH_SENTENCES[:1]), call_id, chunk_ms=100)
        transcripts = by_call(worker.transcripts(expected=1, idle_s=1))[call_id]
        assert word_error_rate(ENGLISH_SENTENCES[0], transcripts[0].text) <= 0.15

        pages = [httpx.get(f"http://127.0.0.1:{worker.web_port}{path}").text
                 for path in ("/health", "/models", "/calls", "/metrics", "/api")]
        assert all(PASSWORD not in page for page in pages)
    finally:
        worker.stop()
    assert PASSWORD not in worker.log_file.read_text(errors="replace")


def test_a_wrong_password_fails_in_one_line(scram_broker):
    env = {**os.environ, **sasl_env("wrong"), "CALLSTT_KAFKA_BOOTSTRAP_SERVERS": scram_broker.sasl_bootstrap_servers}
    result = subprocess.run([CALLSTT, "topics", "describe", "--timeout", "5"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "wrong" not in result.stderr
    assert "auth" in result.stderr.lower() or "sasl" in result.stderr.lower(), result.stderr


def test_web_server_binds_to_loopback_by_default(kafka_bootstrap, tmp_path):
    worker = WorkerProcess(kafka_bootstrap, tmp_path).start()
    try:
        # The machine's own non-loopback address (the one its default route would use).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 9))  # UDP connect sends nothing; it only picks a source address
            address = probe.getsockname()[0]
        assert not address.startswith("127.")
        with pytest.raises(OSError):
            socket.create_connection((address, worker.web_port), timeout=2).close()
        assert httpx.get(f"http://127.0.0.1:{worker.web_port}/health").status_code == 200
    finally:
        worker.stop()
