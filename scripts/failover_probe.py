"""How long a SIGKILLed worker's open streams wait for their successor (docs/capacity.md, Failover).

Two workers in one group (3 partitions) on the bench's broker; N streams keyed to the partitions
of the one about to die each send 0.5 s of silence and an espeak sentence, captured long ago (no
interims, no speculation), leaving an utterance open. Once that worker has taken every chunk, it
is SIGKILLed, and each stream's last second of silence and its end are published. Printed, from
the kill: when each stream's transcript arrives (first, median, last), how many came and how
many twice.

    .venv/bin/python scripts/failover_probe.py 1,50 [session timeout s, default 10]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from aiokafka.partitioner import DefaultPartitioner

from callstt.models.voices.synth import ENGLISH_SENTENCES, synthesize
from callstt.streams.bench.run import own_broker
from callstt.streams.bench.subprocesses import WorkerSubprocess
from callstt.streams.client.producer import CallPublisher, ChunkPlan, iter_chunks
from callstt.streams.client.reader import TranscriptReader

PLAN = ChunkPlan(sample_rate=16000, encoding="PCM_S16LE", chunk_ms=20)
PARTITIONS = [0, 1, 2]


def partitions_of(worker: WorkerSubprocess) -> set[int]:
    return set(httpx.get(f"http://127.0.0.1:{worker.web_port}/health", timeout=5).json().get("partitions") or [])


def wait_until(check, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic()


def call_ids_on(partitions: set[int], count: int) -> list[str]:
    partitioner, ids = DefaultPartitioner(), []
    while len(ids) < count:
        call_id = f"fo-{uuid.uuid4().hex[:10]}"
        if partitioner(call_id.encode(), PARTITIONS, PARTITIONS) in partitions:
            ids.append(call_id)
    return ids


def probe(bootstrap: str, streams: int, session_timeout_s: float, root: Path) -> dict:
    name = f"fo{uuid.uuid4().hex[:6]}"
    env = {"CALLSTT_KAFKA_SESSION_TIMEOUT_S": str(session_timeout_s), "CALLSTT_IDLE_FLUSH_S": "600",
           "OMP_NUM_THREADS": "1"}
    victim = WorkerSubprocess(bootstrap, root / "victim", name=name, extra_env=env).start()
    survivor = WorkerSubprocess(bootstrap, root / "survivor", name=name, extra_env=env).start()
    try:
        wait_until(lambda: partitions_of(victim) and partitions_of(survivor), 120, "both workers hold partitions")
        doomed = partitions_of(victim)
        speech = synthesize(ENGLISH_SENTENCES[0], "en")
        audio = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(16000, np.float32)])
        tail_from = (8000 + len(speech)) // (16000 * PLAN.chunk_ms // 1000)
        calls = {call_id: list(iter_chunks(audio, call_id, "caller", PLAN, start_ms=1_700_000_000_000))
                 for call_id in call_ids_on(doomed, streams)}
        with CallPublisher(bootstrap, victim.audio_topic) as publisher:
            for chunks in calls.values():
                for chunk in chunks[:tail_from]:
                    publisher.send(chunk)
        taken = streams * tail_from
        wait_until(lambda: victim.metrics().get("callstt_chunks_total", 0) >= taken and
                   sum(value for key, value in victim.metrics().items()
                       if key.startswith("callstt_consumer_lag_messages")) == 0, 600, "the victim took every chunk")
        time.sleep(float(os.environ.get("FAILOVER_SETTLE_S", "2")))  # its last batch done
        killed = time.monotonic()
        victim.kill()
        with CallPublisher(bootstrap, victim.audio_topic) as publisher:
            for chunks in calls.values():
                for chunk in chunks[tail_from:]:
                    publisher.send(chunk)
        first_seen: dict[str, float] = {}
        received = 0
        with TranscriptReader(bootstrap, victim.transcript_topic) as reader:
            deadline = time.monotonic() + 1800
            while len(first_seen) < streams and time.monotonic() < deadline:
                for transcript in reader.follow(idle_exit_s=2.0):
                    if transcript.call_id in calls:
                        received += 1
                        first_seen.setdefault(transcript.call_id, time.monotonic() - killed)
            for transcript in reader.follow(idle_exit_s=5.0):  # any second copy
                received += transcript.call_id in calls
        times = sorted(first_seen.values())
        return {"streams": streams, "session_timeout_s": session_timeout_s,
                "transcripts": len(first_seen),
                "published_twice": received - len(first_seen), "first_s": round(times[0], 1),
                "median_s": round(statistics.median(times), 1), "last_s": round(times[-1], 1)}
    finally:
        victim.kill()
        survivor.stop()


def main() -> None:
    counts = [int(n) for n in (sys.argv[1] if len(sys.argv) > 1 else "1").split(",")]
    session_timeout_s = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    broker, bootstrap = own_broker(None)
    try:
        with tempfile.TemporaryDirectory(prefix="failover-") as root:
            for count in counts:
                print(probe(bootstrap, count, session_timeout_s, Path(root) / str(count)), flush=True)
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
