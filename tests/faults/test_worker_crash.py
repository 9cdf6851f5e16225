"""A worker SIGKILLed mid-call loses nothing: its successor resumes the open utterance from the
changelog-backed table, and every sentence is transcribed once after dropping duplicates by id."""

from __future__ import annotations

import signal
import time
import uuid

import numpy as np
import pytest

from callstt.models.voices.synth import ENGLISH_SENTENCES, synthesize
from callstt.streams.bench.evaluation.scoring import word_error_rate
from callstt.streams.client.producer import ChunkPlan, iter_chunks
from callstt.streams.client.reader import TranscriptReader
from tests.pipeline import WorkerProcess, by_call

pytestmark = pytest.mark.faults

SENTENCES = ENGLISH_SENTENCES[:4]
PLAN = ChunkPlan(sample_rate=16000, encoding="PCM_S16LE", chunk_ms=20)


def call_with_midpoints(call_id: str, sentences: list[str] = SENTENCES, start_ms: int = 1_700_000_000_000):
    """The call's chunks, and the chunk index in the middle of each sentence. Captured long ago by
    default: the worker then skips interims and speculation (for a call it is behind on)."""
    silence = np.zeros(16000, dtype=np.float32)
    pieces, midpoints, position = [silence[:8000]], [], 8000
    for text in sentences:
        speech = synthesize(text, "en")
        midpoints.append((position + len(speech) // 2) // (16000 * PLAN.chunk_ms // 1000))
        pieces += [speech, silence]
        position += len(speech) + len(silence)
    chunks = list(iter_chunks(np.concatenate(pieces), call_id, "caller", PLAN, start_ms=start_ms))
    return chunks, midpoints


def wait_for_first_transcript(worker: WorkerProcess, timeout: float = 90.0) -> None:
    with TranscriptReader(worker.bootstrap, worker.transcript_topic) as reader:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if list(reader.follow(idle_exit_s=1.0)):
                return
    raise AssertionError(f"no transcript before the kill:\n{worker.log_tail()}")


def wait_for_transcripts(worker: WorkerProcess, count: int, timeout: float = 90.0) -> None:
    seen: set[str] = set()
    with TranscriptReader(worker.bootstrap, worker.transcript_topic) as reader:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen |= {t.transcript_id for t in reader.follow(idle_exit_s=0.5)}
            if len(seen) >= count:
                return
    raise AssertionError(f"{len(seen)} of {count} transcripts before the kill:\n{worker.log_tail()}")


def wait_for_held_records(worker: WorkerProcess, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while (held := worker.metrics().get("callstt_held_records", 0.0)) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    return held


def test_a_worker_killed_with_an_open_utterance_whose_audio_is_only_in_the_audio_topic_is_replaced_as_if_never_killed(
        kafka_bootstrap, tmp_path, scenario, base_model):
    """SIGKILL mid-utterance. The open utterance's audio was never in the table (audio by
    reference, streams/core/checkpoints.py): its blocks were in the dead worker's memory, its
    chunks' records uncommitted, and the stream's last checkpoint (every 2 s here) points at
    them. The replacement reads them again from the committed offset, decodes them again into
    the blocks, and publishes every utterance with the ids and text of a replay of the call (a
    run that was never killed)."""
    from callstt.models.asr.routing import ModelRouter
    from callstt.streams.replay import replay_calls

    call_id = f"crash-mid_utterance-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(kafka_bootstrap, tmp_path, extra_env={"CALLSTT_CHECKPOINT_INTERVAL_S": "2"}).start()
    scenario.watch(worker)
    # Captured now and sent at the pace of speech, so the worker publishes interims of the open
    # utterances too (it skips them for audio it is behind on).
    chunks, midpoints = call_with_midpoints(call_id, start_ms=int(time.time() * 1000))
    # Up to the middle of the third sentence: two utterances done, one open. Interims are best
    # effort (skipped while a final waits, or once their audio is 1.6 s old): a cold model on a
    # busy machine can skip all of the first sentence's (CI did, once).
    split = midpoints[2]
    try:
        with worker.publisher() as publisher:
            for chunk in chunks[:split - 25]:
                time.sleep(max(chunk.capture_ts_ms / 1000 - time.time(), 0))
                publisher.send(chunk)
            wait_for_transcripts(worker, 2)  # the second final's checkpoint is written
            for chunk in chunks[split - 25:split]:  # half a second more of the open utterance
                publisher.send(chunk)
        held = wait_for_held_records(worker)
        worker.kill(signal.SIGKILL)  # no shutdown, no final commit, no flush

        worker.start()  # same group, topics and data folder: a replacement worker
        with worker.publisher() as publisher:
            for chunk in chunks[split:]:
                publisher.send(chunk)
        received = worker.transcripts(expected=len(SENTENCES))
        # The first sentences' interims were out before their finals, so before the kill.
        interims = worker.interims({call_id})
    finally:
        worker.stop()

    scenario.report(received, {call_id: SENTENCES}, name="worker SIGKILL mid_utterance")
    # Records were committed (checkpoints came), and those of the open utterance were not.
    assert 1 <= held < split, f"{held} records held of the {split} sent before the kill"
    assert "missing from the store" not in worker.log_file.read_text(errors="replace")  # every block came back
    transcripts = by_call(received).get(call_id, [])
    assert [t.utterance_index for t in transcripts] == list(range(len(SENTENCES)))
    assert word_error_rate(SENTENCES, [t.text for t in transcripts]) <= 0.15, [t.text for t in transcripts]
    assert interims and all(not t.is_final for t in interims), "no interim published before the kill"
    replayed = []
    replay_calls(worker.settings(), ModelRouter(base_model), f"{worker.name}.replayed", "replay",
                 call_ids={call_id}, on_transcript=replayed.append)
    assert [(t.transcript_id, t.text) for t in transcripts] == \
        [(t.transcript_id, t.text) for t in sorted(replayed, key=lambda t: t.utterance_index)]


@pytest.mark.parametrize("kill_point", ["during_inference", "sigterm_during_inference"])
def test_sigkilled_worker_is_replaced_and_the_call_completes(kafka_bootstrap, tmp_path, kill_point, scenario):
    """SIGKILL: no shutdown at all. SIGTERM (a deploy): Faust shuts down and commits what was
    acknowledged, while a batch is still in the model; that batch must not count as done."""
    call_id = f"crash-{kill_point}-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(kafka_bootstrap, tmp_path).start()
    scenario.watch(worker)
    chunks, _ = call_with_midpoints(call_id)  # captured long ago: no interims, no speculation
    graceful = kill_point.startswith("sigterm")
    try:
        with worker.publisher() as publisher:
            for chunk in chunks:
                publisher.send(chunk)
        wait_for_first_transcript(worker)
        # SIGKILL: no shutdown, no final commit, no flush. SIGTERM: a clean shutdown and commit.
        worker.kill(signal.SIGTERM if graceful else signal.SIGKILL)
        worker.start()  # same group, topics and data folder: a replacement worker
        received = worker.transcripts(expected=len(SENTENCES))
    finally:
        worker.stop()

    scenario.report(received, {call_id: SENTENCES},
                    name=f"worker SIGTERM {kill_point[8:]}" if graceful else f"worker SIGKILL {kill_point}")
    transcripts = by_call(received).get(call_id, [])
    assert [t.utterance_index for t in transcripts] == list(range(len(SENTENCES)))
    assert word_error_rate(SENTENCES, [t.text for t in transcripts]) <= 0.15, [t.text for t in transcripts]


def test_repeated_sigkills_at_random_moments_lose_nothing(kafka_bootstrap, tmp_path, scenario):
    """Three SIGKILLs at random moments of a streaming call (buffering, inference, just after a
    publish, before a commit: wherever they land), each followed by a replacement worker."""
    import os
    import random
    import threading

    # A different schedule every run; the seed is in the report, CALLSTT_TEST_SEED reruns one.
    seed = int(os.environ.get("CALLSTT_TEST_SEED") or time.time())
    rng = random.Random(seed)
    call_id = f"random-kills-{uuid.uuid4().hex[:6]}"
    chunks, _ = call_with_midpoints(call_id, SENTENCES * 2)  # ~40 s: every kill lands while it streams
    # A replacement is ready once the group gives up on the dead worker: 10 s, not the default 60 s.
    worker = WorkerProcess(kafka_bootstrap, tmp_path, extra_env={"CALLSTT_KAFKA_SESSION_TIMEOUT_S": "10"}).start()
    scenario.watch(worker)
    kills = []

    def stream() -> None:
        started = time.monotonic()
        with worker.publisher() as publisher:
            for index, chunk in enumerate(chunks):
                delay = started + index * PLAN.chunk_ms / 1000 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                publisher.send(chunk)

    streaming = threading.Thread(target=stream)
    try:
        began = time.monotonic()
        streaming.start()
        for _ in range(3):
            time.sleep(rng.uniform(1.0, 6.0))
            kills.append(round(time.monotonic() - began, 1))
            worker.kill()
            worker.start()
        streaming.join()
        received = worker.transcripts(expected=2 * len(SENTENCES), timeout=300)
    finally:
        streaming.join()
        worker.stop()

    call_seconds = len(chunks) * PLAN.chunk_ms / 1000
    scenario.report(received, {call_id: SENTENCES * 2}, name="worker 3 random SIGKILLs",
                    note=f"kills at {kills} s into a {call_seconds:.0f} s call (seed {seed})")
    transcripts = by_call(received).get(call_id, [])
    assert [t.utterance_index for t in transcripts] == list(range(2 * len(SENTENCES))), worker.log_tail(150)
    assert word_error_rate(SENTENCES * 2, [t.text for t in transcripts]) <= 0.15, [t.text for t in transcripts]
