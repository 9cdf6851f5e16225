"""`callstt soak`: K calls at a time, for as long as asked, through one worker: does anything
leak, grow or get lost over hours?

Each of K lanes streams calls back to back in real time: a random number of English sentences
(espeak-ng, one utterance each) with random silences between them and between calls. Every
`sample_every_s` the worker's RSS, open file descriptors, state folder (RocksDB) size and the
changelog's record count are sampled. At the end every call must have exactly its sentences'
utterances, once each after dropping duplicates by transcript id: expected, received, lost and
duplicated are counted, and the samples say whether memory and state stay flat.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.voices.synth import ENGLISH_SENTENCES, synthesize
from callstt.streams.bench import broker_bytes
from callstt.streams.bench.run import own_broker, worker_env
from callstt.streams.bench.subprocesses import WorkerSubprocess
from callstt.streams.client.producer import PLATFORM_CHUNK_MS, CallPublisher
from callstt.streams.client.reader import TranscriptReader

log = logging.getLogger("callstt.bench")



@dataclass
class SoakCall:
    call_id: str
    sentences: list[str]
    audio: np.ndarray  # 16 kHz float32


@dataclass
class SoakProgress:
    """What the lanes sent (call -> its sentence count) and what came back, shared between threads."""

    sentences: dict[str, int] = field(default_factory=dict)
    transcripts: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, call: SoakCall) -> None:
        with self.lock:
            self.sentences[call.call_id] = len(call.sentences)


class SpeechCache:
    """Each sentence synthesized once (espeak-ng takes a moment; a soak says them thousands of times)."""

    def __init__(self) -> None:
        self._audio: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __call__(self, sentence: str) -> np.ndarray:
        with self._lock:
            if sentence not in self._audio:
                self._audio[sentence] = synthesize(sentence, "en")
            return self._audio[sentence]


def make_call(rng: random.Random, call_id: str, speech: SpeechCache) -> SoakCall:
    """1-6 sentences, 0.8-4 s of silence between them (more than the endpointer's 600 ms: one
    utterance per sentence), a short silence before and after."""
    sentences = [rng.choice(ENGLISH_SENTENCES) for _ in range(rng.randint(1, 6))]
    pieces = [np.zeros(int(rng.uniform(0.2, 1.0) * SAMPLE_RATE), dtype=np.float32)]
    for sentence in sentences:
        pieces += [speech(sentence), np.zeros(int(rng.uniform(0.8, 4.0) * SAMPLE_RATE), dtype=np.float32)]
    return SoakCall(call_id, sentences, np.concatenate(pieces))


def run_lane(worker: WorkerSubprocess, lane: int, seed: int, run_id: str, until: float, progress: SoakProgress,
             speech: SpeechCache) -> None:
    """Calls back to back at the pace of speech until `until` (monotonic), 0-5 s apart."""
    rng = random.Random(seed * 1000 + lane)
    with CallPublisher(worker.bootstrap, worker.audio_topic) as publisher:
        number = 0
        while time.monotonic() < until:
            number += 1
            call = make_call(rng, f"{run_id}-lane{lane}-{number}", speech)
            progress.add(call)
            publisher.publish_call(call.audio, call.call_id, "caller", chunk_ms=PLATFORM_CHUNK_MS, realtime=True)
            time.sleep(rng.uniform(0.0, 5.0))


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) if folder.exists() else 0


def changelog_records(worker: WorkerSubprocess) -> int:
    """Records written to the worker's stream-state changelog so far (its partitions' end offsets)."""
    topic = broker_bytes.run_topics(worker)["changelog"]
    return sum(broker_bytes.end_offsets(worker, [topic])[topic].values())


def sample(worker: WorkerSubprocess, started: float, progress: SoakProgress) -> dict[str, Any]:
    """One row: minutes in, calls begun, RSS, open file descriptors, state folder, changelog."""
    pid = worker.process.pid if worker.process else None
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, TypeError):
        fds = None
    with progress.lock:
        calls = len(progress.sentences)
    return {"minute": round((time.monotonic() - started) / 60, 1), "calls_begun": calls,
            "rss_mb": worker.memory().get("VmRSS"), "open_fds": fds,
            "state_mb": round(folder_bytes(worker.data_root / worker.name) / 1e6, 1),
            "changelog_records": changelog_records(worker)}


def count(progress: SoakProgress) -> dict[str, int]:
    """Expected utterances (one per sentence), distinct ones received, lost, duplicated records,
    and extra utterances (a sentence cut in two, or text where there was none)."""
    expected = dict(progress.sentences)
    mine = [t for t in progress.transcripts if t.call_id in expected]
    distinct = {(t.call_id, t.utterance_index) for t in mine}
    received = sum(1 for call_id, index in distinct if index < expected[call_id])
    return {"calls": len(expected), "expected": sum(expected.values()), "received": received,
            "lost": sum(expected.values()) - received,
            "duplicated": len(mine) - len({t.transcript_id for t in mine}), "extra": len(distinct) - received}


def collect(worker: WorkerSubprocess, progress: SoakProgress, stop: threading.Event) -> None:
    """Every final transcript of the topic into `progress`, until `stop`."""
    with TranscriptReader(worker.bootstrap, worker.transcript_topic, from_beginning=True) as reader:
        while not stop.is_set():
            for transcript in reader.follow(idle_exit_s=1.0):
                with progress.lock:
                    progress.transcripts.append(transcript)


def run_soak(worker: WorkerSubprocess, minutes: float, concurrent: int, seed: int, run_id: str,
             sample_every_s: float = 60.0, quiet_s: float = 15.0) -> dict[str, Any]:
    """The soak against a running worker; returns the counts and the samples. After the lanes
    stop, transcripts are awaited until `quiet_s` pass without one."""
    progress, speech, stop = SoakProgress(), SpeechCache(), threading.Event()
    started = time.monotonic()
    lanes = [threading.Thread(target=run_lane, name=f"soak-lane-{lane}", daemon=True,
                              args=(worker, lane, seed, run_id, started + minutes * 60, progress, speech))
             for lane in range(concurrent)]
    collector = threading.Thread(target=collect, args=(worker, progress, stop), name="soak-reader", daemon=True)
    samples = [sample(worker, started, progress)]
    collector.start()
    for lane in lanes:
        lane.start()
    next_sample, last_count, quiet_since = started + sample_every_s, -1, time.monotonic()
    try:
        while any(lane.is_alive() for lane in lanes) or time.monotonic() - quiet_since < quiet_s:
            time.sleep(1.0)
            if len(progress.transcripts) != last_count:
                last_count, quiet_since = len(progress.transcripts), time.monotonic()
            if time.monotonic() >= next_sample:
                samples.append(sample(worker, started, progress))
                log.info("soak: %s", samples[-1])
                next_sample += sample_every_s
        samples.append(sample(worker, started, progress))
    finally:
        stop.set()
        collector.join(timeout=30)
    return {"minutes": minutes, "concurrent_calls": concurrent, "seed": seed, **count(progress), "samples": samples}


def markdown(report: dict[str, Any]) -> list[str]:
    """The report as people read it: the counts, then one row per sample."""
    lines = [f"soak: {report['concurrent_calls']} calls at a time for {report['minutes']} min (seed {report['seed']}): "
             f"{report['calls']} calls, {report['expected']} utterances expected, {report['received']} received, "
             f"{report['lost']} lost, {report['duplicated']} duplicated, {report['extra']} extra", "",
             "| minute | calls begun | RSS MB | open fds | state MB | changelog records |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {s['minute']} | {s['calls_begun']} | {s['rss_mb']} | {s['open_fds']} | {s['state_mb']} | "
              f"{s['changelog_records']} |" for s in report["samples"]]
    return lines


def soak(minutes: float, concurrent: int, seed: int, out_dir: Path, bootstrap: str | None, settings,
         sample_every_s: float = 60.0) -> dict[str, Any]:
    """`callstt soak`: its own worker (the bench's settings) on the given broker, else on the
    bench's own; the report in out_dir/soak.json and soak.md."""
    broker, bootstrap = own_broker(bootstrap)
    data_root = Path(tempfile.mkdtemp(prefix="callstt-soak-"))
    worker = WorkerSubprocess(bootstrap, data_root, name=f"soak{uuid.uuid4().hex[:8]}", extra_env=worker_env(settings))
    try:
        worker.start(timeout=180)
        report = run_soak(worker, minutes, concurrent, seed, worker.name, sample_every_s)
    finally:
        worker.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(data_root, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "soak.json").write_text(json.dumps(report, indent=2))
    (out_dir / "soak.md").write_text("\n".join(markdown(report)) + "\n")
    return report
