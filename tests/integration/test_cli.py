"""`callstt publish`, `callstt tail` and `callstt topics` as a user runs them: the real executable
as a subprocess, against the test broker and (for publish -> transcript) a real worker process."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer

from callstt.models.voices.synth import ENGLISH_SENTENCES, synthesize_wav
from callstt.schemas.codec import SCHEMAS_DIR, AvroCodec
from callstt.schemas.records import Transcript
from callstt.streams.bench.evaluation.scoring import word_error_rate
from tests.pipeline import CALLSTT, REPO_ROOT, WorkerProcess, free_port

pytestmark = pytest.mark.integration

TRANSCRIPT_FIELDS = [field["name"] for field in json.loads((SCHEMAS_DIR / "transcript.avsc").read_text())["fields"]]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any CALLSTT_* setting of the developer's, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CALLSTT_")}
    return {**env, **extra}


def callstt(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([CALLSTT, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT,
                          env=env or clean_env())


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def worker(kafka_bootstrap, tmp_path_factory):
    process = WorkerProcess(kafka_bootstrap, tmp_path_factory.mktemp("cli-worker")).start()
    yield process
    process.stop()


def tail_json(worker: WorkerProcess, call_id: str, deadline_s: float = 90) -> list[dict]:
    """Run `callstt tail --call ID --json --from-beginning --idle-exit 10` until it shows the call's transcripts."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = ok(callstt("tail", "--call", call_id, "--json", "--from-beginning", "--idle-exit", "10",
                            "--bootstrap", worker.bootstrap, "--topic", worker.transcript_topic))
        records = [json.loads(line) for line in result.stdout.splitlines()]
        if records or time.monotonic() > deadline:
            return records


def assert_transcribed(records: list[dict], call_id: str, sentence: str) -> None:
    assert records, f"no transcript of {call_id}"
    for record in records:
        assert list(record) == TRANSCRIPT_FIELDS
        assert record["call_id"] == call_id and record["stream_id"] == "caller"
    text = " ".join(record["text"] for record in sorted(records, key=lambda r: r["utterance_index"]))
    assert word_error_rate(sentence, text) <= 0.2, text


def test_publish_say_then_tail_json(worker):
    sentence, call_id = ENGLISH_SENTENCES[0], f"say-{uuid.uuid4().hex[:8]}"
    published = ok(callstt("publish", "--say", sentence, "--call-id", call_id,
                           "--bootstrap", worker.bootstrap, "--topic", worker.audio_topic))
    [line] = published.stdout.splitlines()
    assert line.split()[:2] == [call_id, "caller"] and "chunks" in line

    records = tail_json(worker, call_id)
    assert_transcribed(records, call_id, sentence)

    # The human form, starting at a time instead of the beginning: the same transcripts, one line each.
    human = ok(callstt("tail", "--call", call_id, "--since", "10m", "--idle-exit", "3",
                       "--bootstrap", worker.bootstrap, "--topic", worker.transcript_topic)).stdout.splitlines()
    assert len(human) == len(records)
    assert all(f"  {call_id}  caller  en  " in line for line in human)
    later = ok(callstt("tail", "--call", call_id, "--since", "2099-01-01T00:00Z", "--idle-exit", "2",
                       "--bootstrap", worker.bootstrap, "--topic", worker.transcript_topic))
    assert later.stdout == ""


def test_publish_a_wav_file_as_mulaw_8k(worker, tmp_path):
    sentence, call_id = ENGLISH_SENTENCES[2], f"wav-{uuid.uuid4().hex[:8]}"
    wav = synthesize_wav(sentence, tmp_path / "support.wav")
    published = ok(callstt("publish", str(wav), "--sample-rate", "8000", "--encoding", "MULAW", "--language", "en",
                           "--call-id", call_id, "--bootstrap", worker.bootstrap, "--topic", worker.audio_topic))
    fields = published.stdout.split()
    assert fields[:2] == [call_id, "caller"] and fields[-1] == "support.wav"

    records = tail_json(worker, call_id)
    assert_transcribed(records, call_id, sentence)
    assert {record["language"] for record in records} == {"en"}


def own_topics(kafka_bootstrap: str) -> dict[str, str]:
    """Settings (as environment) naming a fresh set of project topics."""
    name = f"cli{uuid.uuid4().hex[:8]}"
    return clean_env(CALLSTT_KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, CALLSTT_APP_ID=name,
                     CALLSTT_AUDIO_TOPIC=f"{name}.audio", CALLSTT_TRANSCRIPT_TOPIC=f"{name}.transcripts",
                     CALLSTT_DEAD_LETTER_TOPIC=f"{name}.dead-letter", CALLSTT_CALL_SETTINGS_TOPIC=f"{name}.call-settings",
                     CALLSTT_PARTIAL_TOPIC=f"{name}.transcripts.partial",
                     CALLSTT_TRANSLATION_TOPIC=f"{name}.translations", CALLSTT_SPEECH_TOPIC=f"{name}.speech",
                     CALLSTT_PARTIAL_TRANSLATION_TOPIC=f"{name}.translations.partial",
                     CALLSTT_GATEWAY_SESSION_TOPIC=f"{name}.gateway-sessions", CALLSTT_TOPIC_PARTITIONS="3")


def read_audio_topic(bootstrap: str, topic: str, expected_chunks: int, timeout: float = 30) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"cli-test-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    codec, chunks = AvroCodec(), []
    deadline = time.monotonic() + timeout
    try:
        while len(chunks) < expected_chunks and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                chunks.append(codec.decode_chunk(message.value()))
    finally:
        consumer.close()
    return chunks


def test_calls_n_publishes_concurrent_calls_with_distinct_ids(kafka_bootstrap):
    env = own_topics(kafka_bootstrap)
    ok(callstt("topics", "create", env=env))
    published = ok(callstt("publish", "--say", "Hello there.", "--calls", "3", "--call-id", "multi",
                           "--stream-id", "agent", "--chunk-ms", "100", env=env))
    lines = [line.split() for line in published.stdout.splitlines()]
    assert [line[:2] for line in lines] == [["multi-1", "agent"], ["multi-2", "agent"], ["multi-3", "agent"]]
    chunks_per_call = int(lines[0][4])

    chunks = read_audio_topic(kafka_bootstrap, env["CALLSTT_AUDIO_TOPIC"], 3 * chunks_per_call)
    assert {chunk.call_id for chunk in chunks} == {"multi-1", "multi-2", "multi-3"}
    for call in ("multi-1", "multi-2", "multi-3"):
        mine = [chunk for chunk in chunks if chunk.call_id == call]
        assert [chunk.seq for chunk in mine] == list(range(chunks_per_call))
        assert mine[-1].end_of_stream and mine[0].language is None and mine[0].stream_id == "agent"
        assert {chunk.sample_rate for chunk in mine} == {16000}


@pytest.mark.parametrize("args", [
    ["publish", "--say", "hi", "--no-such-flag"],
    ["publish", "--say", "hi", "--sample-rate", "11025"],
    ["publish", "--say", "hi", "--encoding", "OPUS"],
    ["publish"],  # nothing to publish
    ["tail", "--since", "yesterday"],
    ["tail", "--since", "10m", "--from-beginning"],
    ["topics", "frobnicate"],
])
def test_usage_errors_exit_2(args):
    assert callstt(*args).returncode == 2


def test_a_missing_file_is_one_line_and_exit_1(kafka_bootstrap, tmp_path):
    result = callstt("publish", str(tmp_path / "missing.wav"), "--bootstrap", kafka_bootstrap)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"callstt: error: no such file or directory: {tmp_path / 'missing.wav'}"]
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["tail"], ["topics", "describe"], ["topics", "create"],
                                  ["publish", "--say", "hi"]])
def test_an_unreachable_broker_fails_fast_with_one_line(args):
    nobody = f"127.0.0.1:{free_port()}"
    result = callstt(*args, "--bootstrap", nobody, "--timeout", "2", timeout=30)  # hangs: TimeoutExpired
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"callstt: error: cannot reach Kafka at {nobody} within 2s")


def test_a_missing_topic_is_one_line_and_exit_1(kafka_bootstrap):
    result = callstt("tail", "--bootstrap", kafka_bootstrap, "--topic", f"missing-{uuid.uuid4().hex[:8]}")
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "does not exist" in line


def test_topics_create_then_describe(kafka_bootstrap):
    env = own_topics(kafka_bootstrap)
    name = env["CALLSTT_APP_ID"]
    expected = {f"{name}.audio": 3, f"{name}-control": 3, f"{name}.transcripts": 3, f"{name}.dead-letter": 1,
                f"{name}.call-settings": 3, f"{name}.transcripts.partial": 3, f"{name}.translations": 3,
                f"{name}.translations.partial": 3, f"{name}.speech": 3, f"{name}.gateway-sessions": 3}

    before = ok(callstt("topics", "describe", env=env)).stdout
    assert all(f"{topic}" in before and "missing" in before for topic in expected)
    created = ok(callstt("topics", "create", env=env)).stdout.splitlines()
    assert sorted(line.split()[1] for line in created if line.startswith("created")) == sorted(expected)
    again = ok(callstt("topics", "create", env=env)).stdout.splitlines()
    assert all(line.startswith("exists") for line in again) and len(again) == len(expected)

    described = ok(callstt("topics", env=env)).stdout.splitlines()  # describe is the default
    rows = {line.split()[0]: dict(item.split("=", 1) for item in line.split()[1:]) for line in described}
    assert set(rows) == set(expected)
    for topic, partitions in expected.items():
        assert rows[topic]["partitions"] == str(partitions)
        assert rows[topic]["replication"] == "1"
        compacted = topic.endswith(("call-settings", "gateway-sessions"))  # the latest record per key
        assert rows[topic]["cleanup.policy"] == ("compact,delete" if compacted else "delete")
        assert rows[topic]["min.insync.replicas"] == "1"
    assert rows[f"{name}.audio"]["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert rows[f"{name}.transcripts"]["retention.ms"] == str(30 * 24 * 3600 * 1000)
    assert rows[f"{name}.transcripts.partial"]["retention.ms"] == str(3600 * 1000)  # interims: a live feature
    assert rows[f"{name}.translations.partial"]["retention.ms"] == str(3600 * 1000)


def test_topics_describe_shows_the_workers_changelog(worker):
    env = clean_env(**{key: value for key, value in worker.env().items() if key.startswith("CALLSTT_")})
    rows = {line.split()[0]: line for line in ok(callstt("topics", "describe", env=env)).stdout.splitlines()}
    changelog = rows[f"{worker.name}-streams-changelog"]
    assert "partitions=3" in changelog and "cleanup.policy=compact" in changelog
    assert f"{worker.audio_topic}" in rows and "partitions=3" in rows[worker.audio_topic]


def test_settings_lists_every_setting_with_its_value_and_masks_secrets():
    from dataclasses import fields

    from callstt.streams.settings import Settings

    result = ok(callstt("settings", "--json", env=clean_env(CALLSTT_INFERENCE_MODE="batched", MODEL_SIZE="tiny.en",
                                                             CALLSTT_KAFKA_SASL_PASSWORD="hunter2")))
    rows = {row["name"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert set(rows) == {f.name for f in fields(Settings)}
    assert rows["inference_mode"]["value"] == "batched" and rows["inference_mode"]["default"] == "packed"
    assert rows["model"]["value"] == "tiny.en" and "MODEL_SIZE" in rows["model"]["env"]
    assert rows["kafka_sasl_password"]["value"] == "***" and "hunter2" not in result.stdout
    assert all(row["doc"] for row in rows.values())
    table = ok(callstt("settings", env=clean_env(CALLSTT_KAFKA_SASL_PASSWORD="hunter2"))).stdout
    assert "CALLSTT_INFERENCE_MODE" in table and "OMP_NUM_THREADS" in table and "hunter2" not in table


def test_a_bad_setting_is_one_line_and_exit_1():
    result = callstt("settings", env=clean_env(CALLSTT_INFERENCE_MODE="fastest"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == \
        "callstt: error: CALLSTT_INFERENCE_MODE='fastest': use one of single, batched, packed"


def test_call_settings_set_and_clear_publish_a_record_and_a_tombstone(kafka_bootstrap):
    env = own_topics(kafka_bootstrap)
    ok(callstt("topics", "create", env=env))
    topic = env["CALLSTT_CALL_SETTINGS_TOPIC"]
    printed = json.loads(ok(callstt("call-settings", "set", "call-7", "--languages", "vi, en", "--hotwords",
                                    "Zyntra,Kowalczyk", "--redact", "card,phone", "--stream-languages", "agent=en",
                                    "--translate-to", "pt", "--translate-interims", "--stream-voice", "agent=joe",
                                    env=env)).stdout)
    assert printed["translate_to"] == ["pt"] and printed["translate_interims"] is True and printed["voice"] is None
    assert printed["languages"] == ["vi", "en"] and printed["redact"] == ["card", "phone"]
    assert printed["initial_prompt"] is None  # not given: the worker's default
    assert printed["streams"] == [{"stream_id": "agent", "languages": ["en"], "hotwords": None, "initial_prompt": None,
                                   "translate_to": None, "voice": "joe"}]
    refused = callstt("call-settings", "set", "call-7", "--redact", "cards", env=env)
    assert refused.returncode == 2 and "cards" in refused.stderr  # checked as the worker checks it
    ok(callstt("call-settings", "clear", "call-7", env=env))

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"cli-test-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    records, deadline = [], time.monotonic() + 30
    try:
        while len(records) < 2 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                records.append(message)
    finally:
        consumer.close()
    assert [message.key() for message in records] == [b"call-7", b"call-7"]
    settings = AvroCodec().decode_call_settings(records[0].value())
    assert settings.hotwords == ("Zyntra", "Kowalczyk") and settings.stream("agent").languages == ("en",)
    assert records[1].value() is None  # the tombstone



def transcript_record(call_id: str, text: str, revision: int) -> Transcript:
    """Utterance 0 of the call's caller stream: an interim (revision >= 1, all but its last word
    stable) or, with revision 0, its final."""
    words = text.split()
    stable = words[:-1] if revision else []
    now_ms = int(time.time() * 1000)
    return Transcript(transcript_id=f"{call_id}-0", call_id=call_id, stream_id="caller", utterance_index=0,
                      is_final=revision == 0, text=text, language="en", language_probability=1.0, start_ms=0,
                      end_ms=1000, model_name="base", backend="faster-whisper", avg_logprob=0.0, no_speech_prob=0.0,
                      last_audio_capture_ts_ms=now_ms, last_audio_received_ts_ms=now_ms, produced_ts_ms=now_ms,
                      revision=revision, stable_word_count=len(stable), stable_text=" ".join(stable))


def produce_transcripts(bootstrap: str, topic: str, transcripts: list[Transcript]) -> None:
    codec, producer = AvroCodec(), Producer({"bootstrap.servers": bootstrap})
    for transcript in transcripts:
        producer.produce(topic, key=transcript.call_id.encode(), value=codec.encode_transcript(transcript, topic))
    assert producer.flush(30) == 0


def test_tail_partials_json_follows_interims_then_the_final(kafka_bootstrap):
    env = own_topics(kafka_bootstrap)
    env["CALLSTT_PARTIAL_TOPIC"] = partial_topic = f"{env['CALLSTT_APP_ID']}.transcripts.partial"
    ok(callstt("topics", "create", env=env))
    call_id = f"partials-{uuid.uuid4().hex[:6]}"
    produce_transcripts(kafka_bootstrap, partial_topic, [transcript_record(call_id, "I would", 1),
                                                         transcript_record(call_id, "I would like a", 2)])

    tail = subprocess.Popen([CALLSTT, "tail", "--partials", "--json", "--from-beginning", "--idle-exit", "6"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env=env)
    try:
        # The final only once both interims are out: the two topics' backlogs are read in no set order.
        lines = [tail.stdout.readline(), tail.stdout.readline()]
        produce_transcripts(kafka_bootstrap, env["CALLSTT_TRANSCRIPT_TOPIC"],
                            [transcript_record(call_id, "I would like a table.", 0)])
        rest, errors = tail.communicate(timeout=60)
    finally:
        tail.kill()
    assert tail.returncode == 0, errors
    records = [json.loads(line) for line in lines + rest.splitlines()]
    assert [(r["is_final"], r["revision"]) for r in records] == [(False, 1), (False, 2), (True, 0)]
    assert all(list(r) == TRANSCRIPT_FIELDS and r["call_id"] == call_id for r in records)
    assert [r["stable_text"] for r in records] == ["I", "I would like", ""]

    # Piped without --json: a line per record still worth showing, interims marked "~".
    piped = ok(callstt("tail", "--partials", "--from-beginning", "--idle-exit", "2", env=env)).stdout.splitlines()
    finals = [line for line in piped if line.endswith(f"  {call_id}  caller  en  I would like a table.")]
    assert len(finals) == 1, piped
    # Interims read after their final (the backlogs' order) are not shown: 0 to 2 of them.
    assert all(f"  {call_id}  caller  en  ~ I would" in line for line in piped if line not in finals), piped
