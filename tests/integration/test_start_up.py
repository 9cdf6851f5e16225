"""Start-up faults as a user meets them (issue 22): a worker on a broker that has never seen the
project, topics that are not co-partitioned, no broker at all, a taken web port, a state folder
it cannot write, a corrupt model file, a worker whose batches keep failing and one whose topic
is deleted under it. Each asserts what the user reads (the one-line error, /health,
the exit code) and that afterwards every transcript arrives once.

Real broker (a fresh one per start in the first test), real `callstt worker` processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from callstt.infra.local.kafka import LocalKafka
from callstt.models.asr.store import resolve_model
from callstt.models.voices.synth import synthesize_wav
from callstt.schemas.records import CallSettings
from callstt.streams.bench.evaluation.scoring import word_error_rate
from callstt.streams.client.call_settings import publish_call_settings
from callstt.streams.client.producer import load_audio
from tests.conftest import free_port_pair
from tests.pipeline import REPO_ROOT, WorkerProcess

pytestmark = pytest.mark.integration

SENTENCE = "Thank you for calling customer support."


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return load_audio(synthesize_wav(SENTENCE, tmp_path_factory.mktemp("speech") / "call.wav"), 16000)


def publish_call(worker: WorkerProcess, speech, call_id: str) -> None:
    with worker.publisher() as publisher:
        publisher.publish_call(speech, call_id, "caller")


def assert_once(worker: WorkerProcess, call_id: str, timeout: float = 120.0) -> None:
    transcripts = worker.transcripts(expected=1, call_ids={call_id}, timeout=timeout, idle_s=4)
    assert len(transcripts) == 1, (f"{call_id}: {len(transcripts)} transcripts, 1 expected (ids "
                                   f"{[t.transcript_id for t in transcripts]})\n{worker.log_tail()}")
    assert word_error_rate(SENTENCE, transcripts[0].text) <= 0.2, transcripts[0].text


def assert_mended_worker_transcribes(worker: WorkerProcess, speech) -> None:
    """Start the worker (its fault mended), speak a call to it: the call arrives once."""
    worker.start()
    try:
        call_id = f"mended-{uuid.uuid4().hex[:6]}"
        publish_call(worker, speech, call_id)
        assert_once(worker, call_id)
    finally:
        worker.stop()


def run_worker_command(worker: WorkerProcess, timeout: float = 60) -> subprocess.CompletedProcess:
    """`callstt worker` to its end, for a start that must fail: its exit code and its stderr."""
    return subprocess.run([sys.executable, "-m", "callstt.streams.cli", "worker"], env=worker.env(), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("callstt: error:")]


def test_the_first_call_on_a_brand_new_broker_is_transcribed_every_time(speech, tmp_path):
    """The first run of scripts/demo: a broker that has never seen the project (no topics), a
    worker with a new app id, the call's settings as the first record it reads, then its audio.
    Three times, each on a broker started fresh."""
    for attempt in range(3):
        cluster = LocalKafka(name=f"test-fresh-{os.getpid()}-{attempt}", brokers=1, port=free_port_pair())
        cluster.wipe()
        cluster.start()
        worker = WorkerProcess(cluster.bootstrap_servers, tmp_path / str(attempt))
        try:
            worker.start()
            call_id = f"fresh-{attempt}-{uuid.uuid4().hex[:6]}"
            publish_call_settings(worker.settings(), CallSettings(call_id=call_id, translate_to=["pt"]))
            publish_call(worker, speech, call_id)
            assert_once(worker, call_id, timeout=90)
            assert "PartitionsMismatch" not in worker.log_tail(400), f"attempt {attempt}"
        finally:
            worker.stop()
            cluster.wipe()


def test_topics_that_are_not_copartitioned_stop_the_start_with_one_line(kafka_bootstrap, speech, tmp_path):
    """Someone made the audio topic with 2 partitions; the worker's settings say 3. It refuses to
    start (exit 1, one line naming the counts) before creating anything; with
    CALLSTT_TOPIC_PARTITIONS=2 it starts and transcribes."""
    worker = WorkerProcess(kafka_bootstrap, tmp_path)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(worker.audio_topic, num_partitions=2, replication_factor=1)])[
        worker.audio_topic].result(timeout=30)
    refused = run_worker_command(worker)
    assert refused.returncode == 1, refused.stderr[-3000:]
    (line,) = error_lines(refused.stderr)
    assert f"{worker.audio_topic} has 2" in line and "CALLSTT_TOPIC_PARTITIONS is 3" in line, line
    assert worker.transcript_topic not in admin.list_topics(timeout=10).topics  # nothing created

    worker.extra_env["CALLSTT_TOPIC_PARTITIONS"] = "2"
    assert_mended_worker_transcribes(worker, speech)


def test_no_broker_at_start_is_one_line_and_exit_1(tmp_path):
    port = free_port_pair()  # nothing listens there
    worker = WorkerProcess(f"127.0.0.1:{port}", tmp_path, extra_env={"CALLSTT_START_TIMEOUT_S": "5"})
    refused = run_worker_command(worker)  # it gives up (after its 5 s start timeout), never hangs
    assert refused.returncode == 1, refused.stderr[-3000:]
    (line,) = error_lines(refused.stderr)
    assert f"127.0.0.1:{port}" in line and "CALLSTT_START_TIMEOUT_S" in line, line


def set_topic_config(admin: AdminClient, topic: str, key: str, value: str | None) -> None:
    """Set (or, with None, delete: back to the broker's default) one config of a topic."""
    entry = ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET if value is not None
                        else AlterConfigOpType.DELETE)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def wait_for_health(worker: WorkerProcess, status: str, timeout: float = 90.0) -> tuple[int, dict]:
    deadline, code, body = time.monotonic() + timeout, 0, {}
    while time.monotonic() < deadline and worker.process.poll() is None:
        answer = httpx.get(f"http://127.0.0.1:{worker.web_port}/health", timeout=5)
        code, body = answer.status_code, answer.json()
        if body.get("status") == status:
            return code, body
        time.sleep(0.3)
    raise AssertionError(f"/health never said {status!r} (last: {code} {body})\n{worker.log_tail()}")


def test_a_worker_that_cannot_publish_says_stalled_then_exits_and_loses_nothing(kafka_bootstrap, speech, tmp_path):
    """Batches that keep failing (the broker refuses every transcript: the topic's
    max.message.bytes set too small) make /health answer 503 "stalled" once they have failed for
    CALLSTT_STALL_AFTER_S, never "ok"; CALLSTT_STALL_EXIT_AFTER_S later the worker exits with code
    3. With the topic mended and the worker restarted, the call arrives once. Then a topic the
    worker needs, deleted under it, stalls it the same way, with the topic named."""
    worker = WorkerProcess(kafka_bootstrap, tmp_path, extra_env={"CALLSTT_STALL_AFTER_S": "8",
                                                                  "CALLSTT_STALL_EXIT_AFTER_S": "12"})
    worker.start()
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    try:
        set_topic_config(admin, worker.transcript_topic, "max.message.bytes", "64")
        call_id = f"refused-{uuid.uuid4().hex[:6]}"
        publish_call(worker, speech, call_id)
        code, body = wait_for_health(worker, "stalled")
        assert code == 503 and "failing for" in body["reason"] and "MessageSizeTooLarge" in body["reason"], body
        time.sleep(2)  # the gauge is set every second
        assert worker.metrics()["callstt_stalled_seconds"] > 0
        assert worker.process.wait(timeout=60) == 3, worker.log_tail()
        assert "exiting (code 3)" in worker.log_tail()

        set_topic_config(admin, worker.transcript_topic, "max.message.bytes", None)
        worker.start()
        assert_once(worker, call_id)

        admin.delete_topics([worker.transcript_topic])[worker.transcript_topic].result(timeout=30)
        code, body = wait_for_health(worker, "stalled", timeout=30)
        assert code == 503 and worker.transcript_topic in body["reason"], body
        assert worker.process.wait(timeout=60) == 3, worker.log_tail()
    finally:
        worker.stop()


def test_a_taken_port_an_unwritable_state_folder_and_a_corrupt_model_each_stop_the_start(
        kafka_bootstrap, speech, tmp_path):
    """Each refused in its own words, exit 1; mended, the same worker (same app id and topics)
    starts and transcribes the call once. Bound to every address without a web token, it is
    refused too."""
    worker = WorkerProcess(kafka_bootstrap, tmp_path / "w")
    # Every address, without a token file: the pages would serve call content to anyone (issue 23).
    # The translator and the speaker refuse the same way.
    for command in ("worker", "translator", "speaker"):
        refused = subprocess.run([sys.executable, "-m", "callstt.streams.cli", command], cwd=REPO_ROOT, capture_output=True,
                                 text=True, timeout=60, env={**worker.env(), "CALLSTT_WEB_HOST": "0.0.0.0"})
        assert refused.returncode == 1, refused.stderr[-3000:]
        (line,) = error_lines(refused.stderr)
        assert "serve call content on 0.0.0.0 without a credential" in line and "CALLSTT_WEB_TOKENS_FILE" in line, line

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", worker.web_port))
        taken.listen()
        refused = run_worker_command(worker)
    assert refused.returncode == 1, refused.stderr[-3000:]
    (line,) = error_lines(refused.stderr)
    assert f"the web port 127.0.0.1:{worker.web_port} cannot be used" in line, line

    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    worker.extra_env["CALLSTT_DATA_DIR"] = str(not_a_folder / "state")
    refused = run_worker_command(worker)
    assert refused.returncode == 1, refused.stderr[-3000:]
    (line,) = error_lines(refused.stderr)
    assert f"the state folder {not_a_folder / 'state'} cannot be written" in line and "CALLSTT_DATA_DIR" in line, line
    del worker.extra_env["CALLSTT_DATA_DIR"]

    corrupt = tmp_path / "corrupt-model"
    shutil.copytree(resolve_model("base"), corrupt)
    (corrupt / "model.bin").write_bytes(os.urandom(4096))
    worker.extra_env["CALLSTT_MODEL"] = str(corrupt)
    refused = run_worker_command(worker, timeout=120)
    assert refused.returncode == 1, refused.stderr[-3000:]
    assert f"models could not be loaded: {corrupt / 'model.bin'} could not be loaded" in refused.stderr, \
        refused.stderr[-3000:]
    del worker.extra_env["CALLSTT_MODEL"]

    assert_mended_worker_transcribes(worker, speech)
