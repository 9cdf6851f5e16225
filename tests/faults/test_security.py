"""The broker connection over SASL/SCRAM and over TLS, against a real broker with a SCRAM listener
and one with a TLS listener (a throwaway CA made at start); clients without the CA, or without
TLS, are refused; secrets stay out of logs and web pages; the web server binds to loopback unless
told otherwise."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from callstt.infra.local.kafka import LocalKafka
from callstt.models.voices.synth import ENGLISH_SENTENCES, conversation, synthesize_wav
from callstt.streams.bench.evaluation.scoring import word_error_rate
from callstt.streams.client.kafka import confluent_config
from callstt.streams.settings import Settings
from tests.conftest import free_port_pair
from tests.pipeline import CALLSTT, WorkerProcess, by_call

pytestmark = pytest.mark.faults

USER, PASSWORD = "callstt-worker", f"pw-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def scram_broker():
    cluster = LocalKafka(name=f"test-scram-{os.getpid()}", brokers=1, port=free_port_pair(3),
                         scram_users={USER: PASSWORD})
    cluster.start()
    yield cluster
    cluster.wipe()


@pytest.fixture(scope="module")
def tls_broker():
    cluster = LocalKafka(name=f"test-tls-{os.getpid()}", brokers=1, port=free_port_pair(4), tls=True)
    cluster.start()
    yield cluster
    cluster.wipe()


def sasl_env(password: str = PASSWORD) -> dict[str, str]:
    return {"CALLSTT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CALLSTT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "CALLSTT_KAFKA_SASL_USERNAME": USER, "CALLSTT_KAFKA_SASL_PASSWORD": password}


def tls_env(cafile: Path | None) -> dict[str, str]:
    return {"CALLSTT_KAFKA_SECURITY_PROTOCOL": "SSL", "CALLSTT_KAFKA_SSL_CAFILE": str(cafile or "")}


def test_worker_and_clients_over_sasl_scram_keep_the_password_secret(scram_broker, tmp_path, scenario):
    bootstrap = scram_broker.sasl_bootstrap_servers
    client = confluent_config(Settings.from_env({**sasl_env(), "CALLSTT_KAFKA_BOOTSTRAP_SERVERS": bootstrap}))
    worker = WorkerProcess(bootstrap, tmp_path, extra_env=sasl_env(), client_config=client).start()
    scenario.watch(worker)
    try:
        call_id = f"sasl-{uuid.uuid4().hex[:6]}"
        with worker.publisher() as publisher:
            publisher.publish_call(conversation(ENGLISH_SENTENCES[:1]), call_id, chunk_ms=100)
        received = worker.transcripts(expected=1, idle_s=1)
        scenario.report(received, {call_id: ENGLISH_SENTENCES[:1]}, name="SASL/SCRAM listener")
        transcripts = by_call(received)[call_id]
        assert word_error_rate(ENGLISH_SENTENCES[0], transcripts[0].text) <= 0.15

        pages = [httpx.get(f"http://127.0.0.1:{worker.web_port}{path}", headers=worker.web_headers()).text
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


def test_worker_and_clients_over_tls(tls_broker, tmp_path, scenario):
    """Only the TLS port is given: the worker (Faust/aiokafka, and confluent-kafka for its topics),
    /transcribe (its producer and aiokafka consumer) and the test's own clients all speak TLS,
    trusting the broker's certificate through CALLSTT_KAFKA_SSL_CAFILE."""
    bootstrap = tls_broker.ssl_bootstrap_servers
    env = tls_env(tls_broker.ca_file)
    client = confluent_config(Settings.from_env({**env, "CALLSTT_KAFKA_BOOTSTRAP_SERVERS": bootstrap}))
    worker = WorkerProcess(bootstrap, tmp_path, extra_env=env, client_config=client).start()
    scenario.watch(worker)
    sentences = ENGLISH_SENTENCES[:2]
    try:
        call_id = f"tls-{uuid.uuid4().hex[:6]}"
        with worker.publisher() as publisher:
            publisher.publish_call(conversation(sentences), call_id, chunk_ms=100)
        received = worker.transcripts(expected=len(sentences), idle_s=1)
        wav = synthesize_wav(ENGLISH_SENTENCES[2], tmp_path / "call.wav")
        response = httpx.post(f"http://127.0.0.1:{worker.web_port}/transcribe", headers=worker.web_headers(),
                              files={"file": ("call.wav", wav.read_bytes())}, data={"language": "en"}, timeout=150)
    finally:
        worker.stop()
    scenario.report(received, {call_id: sentences}, name="TLS listener")
    transcripts = by_call(received).get(call_id, [])
    assert [t.utterance_index for t in transcripts] == list(range(len(sentences)))
    assert word_error_rate(sentences, [t.text for t in transcripts]) <= 0.15, [t.text for t in transcripts]
    assert response.status_code == 200, response.text
    assert word_error_rate(ENGLISH_SENTENCES[2], response.json()["text"]) <= 0.15


def callstt(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    result = subprocess.run([CALLSTT, *args], env={**os.environ, **env}, capture_output=True, text=True,
                            timeout=120)
    return result, time.monotonic() - started


@pytest.mark.parametrize("client", ["tls_without_the_ca", "plaintext"])
def test_clients_without_the_ca_or_without_tls_cannot_produce_or_read(tls_broker, client):
    """The same commands that work with the CA fail in one line, within their --timeout."""
    topics = {"CALLSTT_KAFKA_BOOTSTRAP_SERVERS": tls_broker.ssl_bootstrap_servers,
              "CALLSTT_APP_ID": f"tls{uuid.uuid4().hex[:6]}"}
    topics.update(CALLSTT_AUDIO_TOPIC=f"{topics['CALLSTT_APP_ID']}.audio",
                  CALLSTT_TRANSCRIPT_TOPIC=f"{topics['CALLSTT_APP_ID']}.transcripts")
    trusted = {**topics, **tls_env(tls_broker.ca_file)}
    untrusted = {**topics, **(tls_env(None) if client == "tls_without_the_ca"
                              else {"CALLSTT_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"})}
    produce = ("publish", "--say", "hello over TLS", "--timeout", "5")
    read = ("tail", "--from-beginning", "--idle-exit", "2", "--timeout", "5")

    created, _ = callstt(trusted, "topics", "create", "--timeout", "30")
    assert created.returncode == 0, created.stderr
    for command in (produce, read):
        result, _ = callstt(trusted, *command)
        assert result.returncode == 0, result.stderr  # with the CA: works

    for command in (produce, read):
        result, seconds = callstt(untrusted, *command)
        print(f"{client} {command[0]}: exit {result.returncode} after {seconds:.1f} s: {result.stderr.strip()}")
        assert result.returncode == 1, result.stdout + result.stderr
        error = result.stderr.strip()
        assert len(error.splitlines()) == 1 and error.startswith("callstt: error: cannot reach Kafka at"), error
        if client == "tls_without_the_ca":
            assert "certificate verify failed" in error, error


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
