"""A rolling upgrade while calls stream: a worker of a previous version and one of this version
in one consumer group, then the old one replaced by a new one. Partitions, with their open
utterances, move from the old version's state to the new one's through the changelog.

Two previous versions:

- SCHEMA_CHANGE (issue 13's): it writes Transcript version 3 (schema id 5) and a StreamState
  without `first_offset`; this version writes Transcript version 4 (id 6), which that version's
  embedded registry does not know. So, with embedded ids, the new workers run as
  docs/upgrades.md's steps say: with CALLSTT_WRITE_SCHEMA_VERSIONS=Transcript=3 until no reader
  of the previous version is left. With a schema registry (Apicurio, both versions in registry
  mode) they write version 4, and the previous version's code reads it by the id's schema from
  the registry.
- STATE_CHANGE (the last before issue 26's checkpoints): its workers write every batch's state
  and audio blocks to the table; this version's keep them until the stream's checkpoint, and
  commit the records only then. Its state records must read the same.

The new workers also run another inference mode (batched instead of packed): an upgrade that
changes how utterances meet the model. Nothing may be lost, every transcript must be decodable
by both versions, and the ids must be those the previous version gives.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Message

from callstt.models.voices.synth import ENGLISH_SENTENCES, conversation
from callstt.schemas.codec import peek_schema_id
from callstt.streams.bench.evaluation.scoring import word_error_rate
from callstt.streams.client.reader import TranscriptReader
from tests.faults.test_scaling import stream_calls, worker_lines
from tests.pipeline import WorkerProcess, by_call
from tests.worker_process import REPO_ROOT

pytestmark = pytest.mark.faults

SCHEMA_CHANGE = "6546d7b"  # the commit that landed before Transcript version 4 (issue 13)
STATE_CHANGE = "c744437"  # the commit that landed before the checkpoints (issue 26)
CALLS = 6
SENTENCES = ENGLISH_SENTENCES[:4] * 2  # about 28 s a call: partitions move mid-call
OLD_PUBLISHES_WITHIN_S = 120  # its first transcript: about 4 s into the calls on a fast machine
# Run inside the previous version's tree: decode every transcript (hex on stdin), print what it read.
DECODE_WITH_PREVIOUS = """
import json, sys
from schemas.codec import AvroCodec
from schemas.records import transcript_id
codec = AvroCodec(sys.argv[1] or None)
for line in sys.stdin:
    try:
        t = codec.decode_transcript(bytes.fromhex(line.strip()))
        print(json.dumps({"id": t.transcript_id, "computed": transcript_id(t.call_id, t.stream_id, t.utterance_index)}))
    except Exception as error:
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
"""


def previous_tree(commit: str, tmp_path: Path) -> Path:
    """A previous version's files (git archive of `commit`), run with this checkout's venv.

    From the version with the `callstt` import root on, the tree gets a `callstt` folder of links
    to its package folders, for PYTHONPATH (`previous_env`): this checkout's editable install
    would import itself under that name."""
    tree = tmp_path / f"previous-{commit}"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    (tree / "import-root" / "callstt").mkdir(parents=True)
    for package in ("streams", "models", "schemas", "infra"):
        (tree / "import-root" / "callstt" / package).symlink_to(tree / package)
    return tree


def uses_import_root(commit: str) -> bool:
    return commit != SCHEMA_CHANGE  # it predates the callstt import root: its CLI is its tree's streams.cli


def transcripts_published(worker: WorkerProcess, within_s: float) -> float:
    """The worker's callstt_transcripts_total, once it is above 0 (polled every 0.5 s) or when
    `within_s` ran out."""
    deadline = time.monotonic() + within_s
    while True:
        published = sum(value for name, value in worker.metrics().items()
                        if name.startswith("callstt_transcripts_total"))
        if published > 0 or time.monotonic() >= deadline:
            return published
        time.sleep(0.5)


def raw_transcripts(worker: WorkerProcess, call_ids: set[str]) -> list[bytes]:
    """Every record value on the transcript topic of these calls (as this version decodes them)."""
    values: list[bytes] = []
    last_seen = time.monotonic()

    def keep(message: Message) -> None:
        nonlocal last_seen
        last_seen = time.monotonic()
        values.append(message.value())

    codec = worker.codec()
    with TranscriptReader(worker.bootstrap, worker.transcript_topic, codec=codec) as reader:
        for _ in reader.records(stop=lambda: time.monotonic() - last_seen > 5, on_record=keep):
            pass
    return [value for value in values if codec.decode_transcript(value).call_id in call_ids]


def decode_with_previous(tree: Path, commit: str, values: list[bytes], registry_url: str) -> list[dict]:
    script = DECODE_WITH_PREVIOUS.replace("from schemas.", "from callstt.schemas.") if uses_import_root(commit) \
        else DECODE_WITH_PREVIOUS
    env = {**os.environ, "PYTHONPATH": str(tree / "import-root")} if uses_import_root(commit) else None
    done = subprocess.run([sys.executable, "-c", script, registry_url], cwd=tree, capture_output=True, env=env,
                          text=True, input="".join(value.hex() + "\n" for value in values), check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize("previous, schema_ids", [(SCHEMA_CHANGE, "embedded"), (SCHEMA_CHANGE, "registry"),
                                                  (STATE_CHANGE, "embedded")])
def test_a_rolling_upgrade_with_a_new_schema_and_inference_mode_loses_nothing(kafka_bootstrap, tmp_path, request,
                                                                            scenario, previous, schema_ids):
    group = f"upgrade{uuid.uuid4().hex[:6]}"
    registry_url = request.getfixturevalue("schema_registry_url") if schema_ids == "registry" else ""
    previous_version = previous_tree(previous, tmp_path)

    def worker(index: int, cwd: Path, **env: str) -> WorkerProcess:
        (tmp_path / f"w{index}").mkdir()
        cli_module = "streams.cli" if cwd == previous_version and not uses_import_root(previous) \
            else "callstt.streams.cli"
        if cwd == previous_version and uses_import_root(previous):
            env["PYTHONPATH"] = str(previous_version / "import-root")
        return WorkerProcess(kafka_bootstrap, tmp_path / f"w{index}", name=group, cwd=cwd, cli_module=cli_module,
                             extra_env={"CALLSTT_TOPIC_PARTITIONS": "6", "OMP_NUM_THREADS": "1",
                                        "CALLSTT_SCHEMA_REGISTRY_URL": registry_url, **env})

    old = worker(0, previous_version, CALLSTT_INFERENCE_MODE="packed").start()
    # With embedded ids, the new version writes what issue 13's registry.json knows.
    upgraded = {"CALLSTT_INFERENCE_MODE": "batched"} | \
        ({"CALLSTT_WRITE_SCHEMA_VERSIONS": "Transcript=3"} if previous == SCHEMA_CHANGE and not registry_url else {})
    new, replacement = worker(1, REPO_ROOT, **upgraded), worker(2, REPO_ROOT, **upgraded)
    scenario.watch(old, new, replacement)
    call_ids = [f"upgrade-{i}-{uuid.uuid4().hex[:4]}" for i in range(CALLS)]
    publishing_errors: list[BaseException] = []
    streaming = threading.Thread(target=stream_calls, args=(old, call_ids, conversation(SENTENCES), publishing_errors))
    try:
        streaming.start()
        new.start()  # the first new worker joins the old one: partitions move to it mid-call
        # The old version must have taken part before it goes: wait (however slow this machine)
        # until it has published a transcript.
        published_by_old = transcripts_published(old, within_s=OLD_PUBLISHES_WITHIN_S)
        old.stop()  # the old one goes: its partitions (and open utterances) move to the new version
        replacement.start()  # and a new one takes its place
        streaming.join()
        received = new.transcripts(expected=CALLS * len(SENTENCES), timeout=600, idle_s=10)
        values = raw_transcripts(new, set(call_ids))
    finally:
        streaming.join()
        for process in (old, new, replacement):
            process.stop()
    read_by_previous = decode_with_previous(previous_version, previous, values, registry_url)

    scenario.report(received, {call_id: SENTENCES for call_id in call_ids},
                    name=f"rolling upgrade {previous} -> this version, {schema_ids} schema ids",
                    note="6 partitions, packed -> batched" + (", Transcript=3 pinned" if "CALLSTT_WRITE_SCHEMA_VERSIONS"
                                                              in upgraded else ""))
    assert not publishing_errors, f"the test's own publishing failed: {publishing_errors[0]!r}"
    assert published_by_old > 0, \
        f"the old worker published no transcript within {OLD_PUBLISHES_WITHIN_S} s, before it stopped:\n{old.log_tail()}"
    calls = by_call(received)
    for call_id in call_ids:
        transcripts = calls.get(call_id, [])
        assert [t.utterance_index for t in transcripts] == list(range(len(SENTENCES))), \
            f"{call_id}: what the workers logged of it:\n" + worker_lines(call_id, old, new, replacement)
        assert word_error_rate(SENTENCES, [t.text for t in transcripts]) <= 0.2, [t.text for t in transcripts]
    # Every record, whichever version wrote it, decodes with the previous version's code too,
    # and carries the id that version gives the same utterance.
    assert len(read_by_previous) == len(values) > 0
    assert [entry for entry in read_by_previous if "error" in entry] == []
    assert all(entry["id"] == entry["computed"] for entry in read_by_previous)
    codec = new.codec()
    assert {codec.decode_transcript(value).transcript_id for value in values} == \
        {entry["id"] for entry in read_by_previous}
    # Both versions wrote: across the schema change with a registry, each its own version (two ids);
    # else one version (3 pinned, or 4 on both sides of the state change).
    assert len({peek_schema_id(value) for value in values}) == (2 if registry_url else 1)
