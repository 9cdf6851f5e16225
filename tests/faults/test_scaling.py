"""Scale out and back while calls stream: partitions move between workers, per-stream state
follows them through the changelog, and every sentence is transcribed once (after dropping
duplicates by transcript_id)."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest

from callstt.models.voices.synth import ENGLISH_SENTENCES, conversation
from callstt.streams.bench.evaluation.scoring import word_error_rate
from callstt.streams.client.producer import ChunkPlan, iter_chunks
from tests.pipeline import WorkerProcess, by_call

pytestmark = pytest.mark.faults

CALLS = 12
SENTENCES = ENGLISH_SENTENCES[:4]


def stream_calls(worker: WorkerProcess, call_ids: list[str], audio: np.ndarray, errors: list[BaseException]) -> None:
    """All calls at once, at real-time pace (20 ms chunks), as live calls arrive; a failure to
    publish (a chunk the broker refused) lands in `errors` for the test to report."""
    plan = ChunkPlan(16000, "PCM_S16LE", 20)
    calls = [list(iter_chunks(audio, call_id, "caller", plan, int(time.time() * 1000))) for call_id in call_ids]
    started = time.monotonic()
    try:
        with worker.publisher() as publisher:
            for index in range(len(calls[0])):
                delay = started + index * 0.02 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                for chunks in calls:
                    publisher.send(chunks[index])
    except BaseException as error:  # noqa: BLE001 (re-raised by the test, with the rest of the report)
        errors.append(error)


def worker_lines(call_id: str, *workers: WorkerProcess) -> str:
    """The workers' log lines that name the call, and their rebalances: what a failure needs."""
    lines = []
    for index, worker in enumerate(workers):
        for line in worker.log_file.read_text(errors="replace").splitlines():
            if call_id in line or "assigned partitions" in line or "Revoking" in line or "Stopping..." in line[:80]:
                lines.append(f"w{index} {line[:300]}")
    return "\n".join(lines[-200:])


def test_two_then_three_then_two_workers_lose_nothing(kafka_bootstrap, tmp_path, scenario):
    group = f"scale{uuid.uuid4().hex[:6]}"

    def worker(index: int) -> WorkerProcess:
        return WorkerProcess(kafka_bootstrap, tmp_path / f"w{index}", name=group,
                             extra_env={"CALLSTT_TOPIC_PARTITIONS": "6", "OMP_NUM_THREADS": "1"})

    for index in range(3):
        (tmp_path / f"w{index}").mkdir()
    first, second, third = worker(0).start(), worker(1).start(), worker(2)
    scenario.watch(first, second, third)
    call_ids = [f"scale-{i}-{uuid.uuid4().hex[:4]}" for i in range(CALLS)]
    audio = conversation(SENTENCES)
    publishing_errors: list[BaseException] = []
    streaming = threading.Thread(target=stream_calls, args=(first, call_ids, audio, publishing_errors))
    try:
        streaming.start()
        third.start()  # scale out mid-call: a rebalance moves partitions to the newcomer
        time.sleep(5)
        third.stop()  # and back: its partitions (and their open utterances) move again
        streaming.join()
        received = first.transcripts(expected=CALLS * len(SENTENCES), timeout=600, idle_s=10)
    finally:
        streaming.join()
        for process in (first, second, third):
            process.stop()

    scenario.report(received, {call_id: SENTENCES for call_id in call_ids}, name="scale 2 -> 3 -> 2 workers",
                    note="6 partitions")
    assert not publishing_errors, f"the test's own publishing failed: {publishing_errors[0]!r}"
    calls = by_call(received)
    for call_id in call_ids:
        transcripts = calls.get(call_id, [])
        assert [t.utterance_index for t in transcripts] == list(range(len(SENTENCES))), \
            f"{call_id}: what the workers logged of it:\n" + worker_lines(call_id, first, second, third)
        assert word_error_rate(SENTENCES, [t.text for t in transcripts]) <= 0.2, [t.text for t in transcripts]
