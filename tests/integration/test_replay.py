"""Reprocessing: replaying chosen calls into a new topic, and rewinding the workers' group."""

from __future__ import annotations

import time
import uuid

import pytest

from callstt.models.asr.routing import ModelRouter
from callstt.models.voices.synth import ENGLISH_SENTENCES, conversation, synthesize
from callstt.schemas.records import CallSettings
from callstt.streams.client.producer import ChunkPlan, iter_chunks
from callstt.streams.client.reader import TranscriptReader
from callstt.streams.replay import replay_calls, rewind_group
from tests.pipeline import WorkerProcess, by_call

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(kafka_bootstrap, tmp_path_factory):
    process = WorkerProcess(kafka_bootstrap, tmp_path_factory.mktemp("replay")).start()
    yield process
    process.stop()


def publish(worker, call_id: str, sentences: list[str]) -> None:
    with worker.publisher() as publisher:
        publisher.publish_call(conversation(sentences), call_id, "caller", chunk_ms=100)


def test_replay_two_calls_into_a_new_topic_gives_identical_ids_and_text(worker, base_model):
    """The second call is restricted to German by its call settings: the replay applies them too."""
    run = uuid.uuid4().hex[:6]
    first, second, other = f"r1-{run}", f"r2-{run}", f"r3-{run}"
    worker.set_call_settings(CallSettings(call_id=second, languages=("de",)))
    publish(worker, first, ENGLISH_SENTENCES[:2])
    publish(worker, second, ENGLISH_SENTENCES[2:3])
    publish(worker, other, ENGLISH_SENTENCES[3:4])
    live = by_call(worker.transcripts(expected=4, idle_s=2, call_ids={first, second, other}))

    output = f"{worker.name}.transcripts.v2"
    report = replay_calls(worker.settings(), ModelRouter(base_model), output, model_version="v2",
                          call_ids={first, second})
    assert report.calls == {first, second} and report.transcripts == 3

    with TranscriptReader(worker.bootstrap, output) as reader:
        replayed = by_call(reader.collect(idle_exit_s=5))
    assert set(replayed) == {first, second}
    for call in (first, second):
        assert [(t.transcript_id, t.text) for t in replayed[call]] == [(t.transcript_id, t.text) for t in live[call]]
        assert {t.model_version for t in replayed[call]} == {"v2"}
        assert {t.model_version for t in live[call]} == {"base-int8"}
    assert {t.language for t in live[second]} == {t.language for t in replayed[second]} == {"de"}
    assert {t.language for t in replayed[first]} == {"en"}


def test_group_rewind_reprocesses_a_time_range(worker):
    """A call wholly after the rewind point runs again, with the same id. A call the rewind point
    cuts in two (`across`) is read again from its middle, as a worker whose predecessor's commit
    was lost in a rebalance reads it: those records are duplicates of a stream that ended, never
    the start of a new stream with a gap (which once gave different text under the same ids)."""
    run = uuid.uuid4().hex[:6]
    before, after, across = f"before-{run}", f"after-{run}", f"across-{run}"
    across_chunks = list(iter_chunks(conversation(ENGLISH_SENTENCES[2:4]), across, "caller",
                                     ChunkPlan(16000, "PCM_S16LE", 100), start_ms=int(time.time() * 1000)))
    # Its first sentence and the silence after it (the utterance is closed: no idle flush meanwhile).
    split = (500 + len(synthesize(ENGLISH_SENTENCES[2], "en")) * 1000 // 16000 + 800) // 100
    with worker.publisher() as publisher:
        for chunk in across_chunks[:split]:
            publisher.send(chunk)
    publish(worker, before, ENGLISH_SENTENCES[:1])
    worker.transcripts(expected=2, idle_s=1, call_ids={before, across})
    time.sleep(1.0)
    rewind_to = int(time.time() * 1000)
    with worker.publisher() as publisher:
        for chunk in across_chunks[split:]:
            publisher.send(chunk)
    publish(worker, after, ENGLISH_SENTENCES[1:2])
    calls = (before, after, across)
    first_pass = [t for t in worker.transcripts(expected=4, idle_s=3, call_ids=set(calls)) if t.call_id in calls]
    assert sorted(t.call_id for t in first_pass) == sorted([before, after, across, across])

    worker.stop()  # Kafka only moves a group's offsets while it has no members
    offsets = rewind_group(worker.settings(), worker.name, rewind_to)
    assert len(offsets) == 3
    worker.start()
    received = [t for t in worker.transcripts(expected=1, idle_s=8) if t.call_id in calls]

    counts = {call: sum(1 for t in received if t.call_id == call) for call in calls}
    # Only the call after the rewind point ran again; the one cut in two gave nothing new.
    assert counts == {before: 1, after: 2, across: 2}, [(t.call_id, t.utterance_index, t.text) for t in received]
    ids = {t.transcript_id for t in received if t.call_id == after}
    assert len(ids) == 1  # and it came out with the same transcript id: consumers drop it
