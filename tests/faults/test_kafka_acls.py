"""Least-privilege principals against a real broker with the authorizer on (KRaft's
StandardAuthorizer, nothing allowed without an ACL), one SCRAM user per role, the ACLs from the
project's own role table (`callstt acls --apply`, streams/client/acls.py).

Each component does its whole job with only its role's ACLs: the admin makes the topics, the
platform's producer publishes a call and its settings, the worker transcribes it, the translator
translates it, the speaker speaks the translation, a reader follows all three with `callstt tail`.
What a role may not do fails at once, in one line naming the principal, the topic and the
operation; a worker whose ACL is taken away while it runs says so on /health (stalled), rather
than retrying in silence."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import httpx
import pytest
from confluent_kafka.admin import (AclBindingFilter, AclOperation, AclPermissionType, AdminClient, ResourcePatternType,
                                   ResourceType)

from callstt.infra.local.kafka import LocalKafka
from callstt.models.voices.synth import ENGLISH_SENTENCES
from callstt.streams.bench.evaluation.scoring import word_error_rate
from tests.conftest import free_port_pair
from tests.pipeline import CALLSTT, WorkerProcess, free_port

pytestmark = pytest.mark.faults

ROLES = ("admin", "producer", "worker", "translator", "speaker", "reader")
PASSWORDS = {f"callstt-{role}": f"pw-{uuid.uuid4().hex}" for role in ROLES}


def as_role(role: str) -> dict[str, str]:
    """The environment that connects a callstt process as `role`'s SCRAM user."""
    return {"CALLSTT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CALLSTT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            "CALLSTT_KAFKA_SASL_USERNAME": f"callstt-{role}", "CALLSTT_KAFKA_SASL_PASSWORD": PASSWORDS[f"callstt-{role}"]}


@pytest.fixture(scope="module")
def acl_broker():
    cluster = LocalKafka(name=f"test-acls-{os.getpid()}", brokers=1, port=free_port_pair(3),
                         scram_users=PASSWORDS, authorizer=True)
    cluster.start()
    yield cluster
    cluster.wipe()


@pytest.fixture(scope="module")
def deployment(acl_broker, tmp_path_factory):
    """The ACLs applied by the super user, the topics made by the admin role, then the worker,
    the translator (every call into Portuguese) and the speaker, each as its own user."""
    root = tmp_path_factory.mktemp("acls")
    # each with /metrics on a port of its own too (CALLSTT_METRICS_PORT), as the Kubernetes pods run
    worker = WorkerProcess(acl_broker.sasl_bootstrap_servers, root,
                           extra_env={**as_role("worker"), "CALLSTT_METRICS_PORT": str(free_port())})
    identity = {key: value for key, value in worker.env().items() if key.startswith("CALLSTT_")}
    super_user = {**identity, "CALLSTT_KAFKA_BOOTSTRAP_SERVERS": acl_broker.bootstrap_servers,
                  "CALLSTT_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
    applied = callstt(super_user, "acls", "--apply")
    assert applied.returncode == 0 and "added" in applied.stdout, applied.stderr
    created = callstt({**identity, **as_role("admin")}, "topics", "create", "--timeout", "30")
    assert created.returncode == 0, created.stderr
    agents = [WorkerProcess(acl_broker.sasl_bootstrap_servers, root, name=worker.name, command=command,
                            extra_env={**as_role(command), "CALLSTT_TRANSLATE_TO": "pt",
                                       "CALLSTT_METRICS_PORT": str(free_port())})
              for command in ("translator", "speaker")]
    started = []
    try:
        for process in (worker, *agents):
            started.append(process.start())
        yield {"identity": identity, "worker": worker, "translator": agents[0], "speaker": agents[1],
               "super_user": super_user}
    finally:
        for process in started:
            process.stop()


def callstt(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CALLSTT, *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)


def health(process: WorkerProcess) -> dict:
    """What the process's /health says: a denied action shows there (stalled, with the error)."""
    return httpx.get(f"http://127.0.0.1:{process.web_port}/health", timeout=5).json()


def test_each_component_does_its_whole_job_with_only_its_roles_acls(deployment):
    identity, sentence = deployment["identity"], ENGLISH_SENTENCES[0]
    call_id = f"acl-{uuid.uuid4().hex[:6]}"
    producer = {**identity, **as_role("producer")}
    settings_set = callstt(producer, "call-settings", "set", call_id, "--languages", "en", "--translate-to", "pt")
    assert settings_set.returncode == 0, settings_set.stderr
    published = callstt(producer, "publish", "--say", sentence, "--call-id", call_id)
    assert published.returncode == 0, published.stderr

    reader = {**identity, **as_role("reader")}
    transcripts = followed(reader, call_id)
    assert transcripts, health(deployment["worker"])
    texts = [json.loads(line)["text"] for line in transcripts]
    assert word_error_rate(sentence, " ".join(texts)) <= 0.2, texts
    assert followed(reader, call_id, "--translations"), health(deployment["translator"])
    assert followed(reader, call_id, "--speech"), health(deployment["speaker"])


def followed(reader: dict[str, str], call_id: str, *what: str, within_s: float = 90) -> list[str]:
    """The lines `callstt tail` prints for the call (as the reader role), once there are any."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        tail = callstt(reader, "tail", *what, "--from-beginning", "--call", call_id, "--json", "--idle-exit", "3",
                       "--timeout", "30")
        assert tail.returncode == 0, tail.stderr
        if tail.stdout.strip():
            return tail.stdout.splitlines()
    return []


def test_metrics_on_their_own_port_are_open_and_the_web_ports_metrics_need_the_token(deployment):
    """What lets a NetworkPolicy give Prometheus the metrics and nothing else (infra/k8s)."""
    for process in (deployment["worker"], deployment["translator"], deployment["speaker"]):
        metrics_port = process.env()["CALLSTT_METRICS_PORT"]
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert metrics.status_code == 200 and "callstt_stalled_seconds" in metrics.text, process.command
        web = f"http://127.0.0.1:{process.web_port}/metrics"
        assert httpx.get(web, timeout=5).status_code == 401, process.command
        assert httpx.get(web, headers=process.web_headers(), timeout=5).status_code == 200, process.command


@pytest.mark.parametrize("role, command, topic, operation", [
    ("producer", ("tail", "--from-beginning", "--idle-exit", "5"), "CALLSTT_TRANSCRIPT_TOPIC", "Read"),
    ("reader", ("publish", "--say", "let me in"), "CALLSTT_AUDIO_TOPIC", "Write"),
    ("reader", ("call-settings", "set", "someone-elses-call", "--redact", ""), "CALLSTT_CALL_SETTINGS_TOPIC",
     "Write"),
    ("translator", ("tail", "--from-beginning", "--idle-exit", "5", "--topic", "{audio}"), "CALLSTT_AUDIO_TOPIC",
     "Read"),
])
def test_what_a_role_may_not_do_fails_at_once_naming_principal_topic_and_operation(deployment, role, command,
                                                                                  topic, operation):
    identity = deployment["identity"]
    command = tuple(arg.replace("{audio}", identity["CALLSTT_AUDIO_TOPIC"]) for arg in command)
    started = time.monotonic()
    result = callstt({**identity, **as_role(role)}, *command, "--timeout", "10")
    took = time.monotonic() - started
    assert result.returncode == 1, (result.stdout, result.stderr)
    message = result.stderr.strip().splitlines()[-1]
    assert f"User:callstt-{role}" in message and identity[topic] in message and operation in message, message
    assert took < 30, f"took {took:.0f} s: {message}"


def test_a_worker_whose_acl_is_taken_away_says_so_on_health(deployment):
    identity, worker = deployment["identity"], deployment["worker"]
    admin = AdminClient({"bootstrap.servers": deployment["super_user"]["CALLSTT_KAFKA_BOOTSTRAP_SERVERS"]})
    taken = AclBindingFilter(ResourceType.TOPIC, identity["CALLSTT_TRANSCRIPT_TOPIC"], ResourcePatternType.LITERAL,
                             "User:callstt-worker", None, AclOperation.WRITE, AclPermissionType.ALLOW)
    [future] = admin.delete_acls([taken]).values()
    assert future.result(timeout=30), "the worker's Write on transcripts was not there to take"
    published = callstt({**identity, **as_role("producer")}, "publish", "--say", ENGLISH_SENTENCES[1],
                        "--call-id", f"acl-{uuid.uuid4().hex[:6]}")
    assert published.returncode == 0, published.stderr
    deadline, said = time.monotonic() + 90, {}
    while time.monotonic() < deadline:
        said = health(worker)
        if said.get("status") == "stalled":
            break
        time.sleep(1)
    assert said.get("status") == "stalled", said
    assert "authoriz" in str(said).lower() and identity["CALLSTT_TRANSCRIPT_TOPIC"] in str(said), said
