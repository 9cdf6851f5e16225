"""`callstt bench`: how close the pipeline runs to the model alone, its latency, and how many live
calls one machine carries (issue 7). Results are ratios measured in one run, so they hold on a
noisy shared machine; nothing here asserts a threshold.

    from streams.bench import run_bench
    report = run_bench(quick=True, out_dir=".local/bench")   # bench.json + bench.md there

Sections of the report (JSON keys):
- ``workload``: the generated calls (espeak-ng, English and Vietnamese, fixed seed, silences);
- ``floor``: the same utterances the worker cuts, transcribed in-process by the same backend,
  model, compute type and threads, sequentially (``transcribe_utterance``: language choice
  included): the model-alone time;
- ``pipeline``: the same calls published as fast as the producer can to one worker
  subprocess on the real broker; first chunk produced -> last transcript consumed;
  ``overhead = pipeline_s / floor_s`` and where the rest goes (worker /metrics);
- ``live``: K calls at real-time pace (~50 % speech), end-of-speech -> transcript received
  p50/p95/p99, the part after the endpoint decision, and lag growth;
- ``capacity``: the largest K with p95 after the endpoint < 1.5 s and no lag growth;
- ``worker``: start -> /health 200, model load seconds, RSS idle and peak under load;
- ``accuracy``: English WER and language-ID accuracy, floor and pipeline;
- ``inference_modes``: one utterance per model call vs batched vs packed (models.batching),
  throughput and WER on the same utterances.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tests.worker_process import WorkerProcess

log = logging.getLogger("callstt.bench")

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_BROKER_NAME = "bench"
BENCH_BROKER_PORT = 39092
P95_LIMIT_S = 1.5
CHUNK_MS = 20
SAMPLE_RATE = 8000  # telephone audio, mu-law, as the demo sends
ENCODING = "MULAW"


# --- workload -------------------------------------------------------------------------------

@dataclass
class BenchCall:
    """One generated call: a single stream of sentences with silences between them."""

    name: str
    language: str
    sentences: list[str]
    samples: np.ndarray = field(repr=False)  # SAMPLE_RATE mono float32
    speech_s: float = 0.0

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


class Synth:
    """espeak-ng with a cache: each distinct sentence is synthesized once."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str], np.ndarray] = {}

    def __call__(self, text: str, language: str) -> np.ndarray:
        from models.synth import synthesize

        key = (text, language)
        if key not in self.cache:
            self.cache[key] = synthesize(text, language, sample_rate=SAMPLE_RATE)
        return self.cache[key]


def make_call(name: str, language: str, rng: random.Random, synth: Synth, sentences: int,
              silence_s: tuple[float, float], lead_s: float = 0.5, min_seconds: float = 0.0) -> BenchCall:
    """A call of `sentences` sentences (or enough to last `min_seconds`), silences drawn from `silence_s`."""
    from models.synth import ENGLISH_SENTENCES, VIETNAMESE_SENTENCES

    pool = ENGLISH_SENTENCES if language == "en" else VIETNAMESE_SENTENCES
    pieces = [np.zeros(int(lead_s * SAMPLE_RATE), dtype=np.float32)]
    chosen: list[str] = []
    speech = 0.0
    total = lead_s
    while len(chosen) < sentences or total < min_seconds:
        text = rng.choice(pool)
        audio = synth(text, language)
        gap = rng.uniform(*silence_s)
        pieces += [audio, np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32)]
        chosen.append(text)
        speech += len(audio) / SAMPLE_RATE
        total += len(audio) / SAMPLE_RATE + gap
    return BenchCall(name, language, chosen, np.concatenate(pieces), speech)


def make_workload(seed: int, english: int, vietnamese: int, sentences: int,
                  silence_s: tuple[float, float], synth: Synth, min_seconds: float = 0.0,
                  prefix: str = "call") -> list[BenchCall]:
    rng = random.Random(seed)
    languages = ["en"] * english + ["vi"] * vietnamese
    return [make_call(f"{prefix}{index}-{language}", language, rng, synth, sentences, silence_s,
                      min_seconds=min_seconds)
            for index, language in enumerate(languages)]


# --- the worker's own cut, run in-process (untimed for the floor) -----------------------------

def cut_utterances(call: BenchCall, call_id: str, settings) -> tuple[list, float]:
    """The utterances a worker cuts from this call's chunks (same assembler, VAD, endpointing),
    and the seconds that took (decode + VAD + endpointing, in-process)."""
    from models.endpointing import EndpointConfig
    from streams.core.assembly import AssemblyConfig, StreamAssembler
    from streams.client.producer import ChunkPlan, iter_chunks

    assembler = StreamAssembler(AssemblyConfig(endpoint=EndpointConfig(
        min_silence_ms=settings.min_silence_ms, max_utterance_ms=settings.max_utterance_ms)))
    table: dict[str, bytes] = {}
    state = assembler.new_state(call_id, "caller")
    utterances = []
    start_ms = int(time.time() * 1000)
    chunks = list(iter_chunks(call.samples, call_id, "caller", ChunkPlan(SAMPLE_RATE, ENCODING, CHUNK_MS), start_ms))
    started = time.perf_counter()
    for chunk in chunks:
        outcome = assembler.accept(state, chunk, chunk.capture_ts_ms, table.get)
        for key in outcome.deletes:
            table.pop(key, None)
        table.update(outcome.writes)
        utterances += outcome.utterances
        state = outcome.state
    return utterances, time.perf_counter() - started


# --- helpers --------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": _r(percentile(values, 50)), "p95": _r(percentile(values, 95)),
            "p99": _r(percentile(values, 99)), "max": _r(max(values) if values else None),
            "mean": _r(statistics.fmean(values) if values else None)}


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("faster-whisper", "ctranslate2", "faust-streaming", "aiokafka", "confluent-kafka",
                    "onnxruntime", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpu_count": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)), "cpu_model": model,
            "platform": platform.platform(), "python": platform.python_version(), "packages": versions,
            "load_average_at_start": [round(x, 2) for x in load] if load else None}


def metric_sum(samples: dict[str, float], name: str) -> float:
    """Sum of a metric over its labels (e.g. consumer lag over partitions)."""
    return sum(value for key, value in samples.items() if key == name or key.startswith(name + "{"))


def histogram_quantile(before: dict[str, float], after: dict[str, float], name: str, q: float) -> float | None:
    """Quantile of the observations between two scrapes of a histogram (Prometheus' interpolation)."""
    buckets = []
    for key, value in after.items():
        if key.startswith(name + "_bucket{"):
            bound = key.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), value - before.get(key, 0.0)))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            inside = count - previous_count
            return previous_bound + (bound - previous_bound) * ((rank - previous_count) / inside if inside else 1)
        previous_bound, previous_count = bound, count
    return None


# --- the worker under test ------------------------------------------------------------------

@dataclass
class Arrival:
    transcript: Any
    arrived_ms: int


def collect(reader, expected: int, deadline: float, idle_s: float,
            on_poll=None, wanted=None) -> list[Arrival]:
    """Transcripts (distinct ids) until `expected` arrived, or `idle_s` without one after `deadline`'s
    publishing ended (the caller passes the publishing flag through `on_poll`), or the deadline."""
    from confluent_kafka import KafkaError

    arrivals: dict[str, Arrival] = {}
    last_new = time.monotonic()
    while time.monotonic() < deadline:
        busy = on_poll() if on_poll else False
        if len(arrivals) >= expected:
            break
        if not busy and time.monotonic() - last_new > idle_s:
            break
        message = reader.consumer.poll(0.2)
        if message is None:
            continue
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                continue
            if message.error().fatal():
                raise RuntimeError(f"consuming transcripts failed: {message.error()}")
            log.warning("transcript consumer: %s (retrying)", message.error())
            continue
        arrived = int(time.time() * 1000)
        transcript = reader.codec.decode_transcript(message.value())
        if wanted is not None and transcript.call_id not in wanted:
            continue  # an earlier section's transcript (the reader starts at the beginning)
        if transcript.transcript_id not in arrivals:
            arrivals[transcript.transcript_id] = Arrival(transcript, arrived)
            last_new = time.monotonic()
    return sorted(arrivals.values(), key=lambda a: a.arrived_ms)


def call_accuracy(calls: dict[str, BenchCall], texts: dict[str, list[tuple[int, str, str]]]) -> dict[str, Any]:
    """English WER over whole calls (transcripts joined in utterance order) and language-ID accuracy."""
    from models.scoring import word_error_rate

    refs, hyps, right, total = [], [], 0, 0
    for call_id, call in calls.items():
        items = sorted(texts.get(call_id, []))
        for _, _, language in items:
            total += 1
            right += language == call.language
        if call.language == "en":
            refs.append(" ".join(call.sentences))
            hyps.append(" ".join(text for _, text, _ in items))
    return {"wer_en": _r(word_error_rate(refs, hyps)) if refs else None,
            "language_id_accuracy": _r(right / total) if total else None, "transcripts": total}


# --- the sections ---------------------------------------------------------------------------

def run_floor(router, calls: dict[str, BenchCall], settings) -> dict[str, Any]:
    from streams.core.transcripts import should_stick, transcribe_utterance

    cut = {call_id: cut_utterances(call, call_id, settings) for call_id, call in calls.items()}
    assembly_s = sum(seconds for _, seconds in cut.values())
    texts: dict[str, list] = defaultdict(list)
    per_utterance = []
    model_s = 0.0
    started = time.perf_counter()
    for call_id, (utterances, _) in cut.items():
        language, probability = "", 0.0
        for utterance in utterances:
            outcome = transcribe_utterance(router, utterance, language, probability, settings.model_version_label)
            model_s += outcome.model_seconds
            if should_stick(outcome.choice, utterance):
                language, probability = outcome.choice.language, outcome.choice.probability
            per_utterance.append(outcome.model_seconds)
            if outcome.transcript is not None:
                texts[call_id].append((utterance.index, outcome.transcript.text, outcome.transcript.language))
    floor_s = time.perf_counter() - started
    utterances = [u for us, _ in cut.values() for u in us]
    audio_s = sum(len(u.audio) for u in utterances) / 16000
    return {
        "seconds": _r(floor_s), "model_seconds": _r(model_s), "utterances": len(utterances),
        "transcripts": sum(len(v) for v in texts.values()), "utterance_audio_seconds": _r(audio_s),
        "realtime_factor": _r(floor_s / audio_s) if audio_s else None,
        "seconds_per_utterance": summary(per_utterance),
        "assembly_seconds_in_process": _r(assembly_s),
        "accuracy": call_accuracy(calls, texts),
        "_utterances": utterances, "_texts": texts,
    }


def run_pipeline(worker: WorkerProcess, calls: dict[str, BenchCall], expected: int, floor_s: float,
                 assembly_s: float) -> dict[str, Any]:
    from streams.client.reader import TranscriptReader
    from streams.client.producer import CallPublisher, ChunkPlan
    from streams.client.publishing import CallInput, CallJob, send_calls

    jobs = [CallJob(call_id, "caller", CallInput(call.name, call.samples, SAMPLE_RATE)) for call_id, call in calls.items()]
    before = worker.metrics()
    reader = TranscriptReader(worker.bootstrap, worker.transcript_topic, from_beginning=True)
    publisher = CallPublisher(worker.bootstrap, worker.audio_topic)
    try:
        started_ms = int(time.time() * 1000)
        started = time.monotonic()
        send_calls(publisher, jobs, ChunkPlan(SAMPLE_RATE, ENCODING, CHUNK_MS))
        publisher.flush()
        produced_s = time.monotonic() - started
        arrivals = collect(reader, expected, time.monotonic() + max(120.0, 20 * floor_s), idle_s=15.0,
                           wanted=set(calls))
    finally:
        reader.close()
    after = worker.metrics()
    mine = [a for a in arrivals if a.transcript.call_id in calls]
    wall_s = (max(a.arrived_ms for a in mine) - started_ms) / 1000 if mine else None
    inference_s = metric_sum(after, "callstt_inference_seconds_sum") - metric_sum(before, "callstt_inference_seconds_sum")
    texts: dict[str, list] = defaultdict(list)
    for a in mine:
        texts[a.transcript.call_id].append((a.transcript.utterance_index, a.transcript.text, a.transcript.language))
    stages = {stage: _r(metric_sum(after, f'callstt_stage_seconds_total{{stage="{stage}"}}')
                        - metric_sum(before, f'callstt_stage_seconds_total{{stage="{stage}"}}'))
              for stage in ("avro_decode", "audio_decode", "vad", "assembly", "model", "publish", "table_writes")}
    accounted = sum(value or 0.0 for value in stages.values())
    model_calls = metric_sum(after, "callstt_utterances_per_model_call_count") - \
        metric_sum(before, "callstt_utterances_per_model_call_count")
    return {
        "seconds": _r(wall_s), "publish_seconds": _r(produced_s), "transcripts": len(mine), "expected": expected,
        "overhead": _r(wall_s / floor_s, 3) if wall_s and floor_s else None,
        # The same ratio against the worker's own model time: robust to the machine getting busier
        # between the floor and this section (other processes share the cores).
        "overhead_vs_worker_model_time": _r(wall_s / inference_s, 3) if wall_s and inference_s > 0 else None,
        "model_calls": int(model_calls),
        "where_the_time_goes": {
            **{f"{stage}_s": value for stage, value in stages.items()},
            "kafka_and_waiting_s": _r(wall_s - accounted) if wall_s else None,
            "assembly_seconds_same_audio_in_process": _r(assembly_s),
            "note": "worker stage times: callstt_stage_seconds_total deltas on its /metrics (avro_decode: "
                    "Avro decode of chunks; audio_decode: G.711/PCM decode and resampling; vad: Silero VAD; "
                    "assembly: sequencing, endpointing and state bookkeeping; "
                    "model: language choice and transcription; publish: Avro encode, produce, acks; "
                    "table_writes: state and audio blocks into the table and its changelog); the rest is "
                    "Kafka fetches, commits and the worker waiting for input",
        },
        "accuracy": call_accuracy(calls, texts),
    }


def run_live(worker: WorkerProcess, calls: list[BenchCall], k: int, seed: int, run_id: str) -> dict[str, Any]:
    """K calls at real-time pace, staggered starts; latency per transcript and the lag trend."""
    from streams.client.reader import TranscriptReader
    from streams.client.producer import CallPublisher, ChunkPlan
    from streams.client.publishing import CallInput, CallJob, send_calls

    rng = random.Random(seed + k)
    jobs, by_id = [], {}
    for index in range(k):
        call = calls[index % len(calls)]
        lead = np.zeros(int(rng.uniform(0, 3.0) * SAMPLE_RATE), dtype=np.float32)  # calls start apart
        call_id = f"{run_id}-live{k}-{index}"
        by_id[call_id] = call
        jobs.append(CallJob(call_id, "caller", CallInput(call.name, np.concatenate([lead, call.samples]), SAMPLE_RATE)))
    expected = sum(len(call.sentences) for call in by_id.values())
    before = worker.metrics()
    reader = TranscriptReader(worker.bootstrap, worker.transcript_topic, from_beginning=True)
    publisher = CallPublisher(worker.bootstrap, worker.audio_topic)
    done = threading.Event()
    lag_samples: list[tuple[float, float]] = []
    peak_rss = [0.0]

    def produce() -> None:
        try:
            send_calls(publisher, jobs, ChunkPlan(SAMPLE_RATE, ENCODING, CHUNK_MS), realtime=True)
            publisher.flush()
        finally:
            done.set()

    started = time.monotonic()
    last_sample = [0.0]

    def on_poll() -> bool:
        if time.monotonic() - last_sample[0] >= 1.0:
            last_sample[0] = time.monotonic()
            try:
                lag_samples.append((time.monotonic() - started, metric_sum(worker.metrics(), "callstt_consumer_lag_messages")))
            except Exception:  # a slow scrape under load is not a failure
                pass
            peak_rss[0] = max(peak_rss[0], worker.memory().get("VmRSS", 0.0))
        return not done.is_set()

    thread = threading.Thread(target=produce, name=f"live-{k}", daemon=True)
    thread.start()
    duration = max(call.seconds for call in by_id.values()) + 3.0
    try:
        arrivals = collect(reader, expected, time.monotonic() + duration + 120.0, idle_s=10.0, on_poll=on_poll,
                           wanted=set(by_id))
    finally:
        thread.join(timeout=duration + 60)
        reader.close()
    after = worker.metrics()
    mine = [a for a in arrivals if a.transcript.call_id in by_id]
    eos, after_endpoint, points = [], [], []
    for a in mine:
        t = a.transcript
        if t.last_audio_capture_ts_ms > 0:
            eos.append((a.arrived_ms - t.last_audio_capture_ts_ms) / 1000)
            points.append((t.last_audio_capture_ts_ms, eos[-1]))
        if t.last_audio_received_ts_ms > 0:
            after_endpoint.append((a.arrived_ms - t.last_audio_received_ts_ms) / 1000)
    points.sort()
    third = max(1, len(points) // 3)
    early = statistics.median(v for _, v in points[:third]) if points else None
    late = statistics.median(v for _, v in points[-third:]) if points else None
    # Lag grows when the late transcripts wait clearly longer than the early ones (a backlog builds),
    # or transcripts are missing at the end.
    grows = bool(points) and len(points) >= 3 and late - early > max(1.0, 0.5 * early)
    missing = expected - len(mine)
    lag_values = [v for _, v in lag_samples]
    lag_third = max(1, len(lag_values) // 3)
    texts: dict[str, list] = defaultdict(list)
    for a in mine:
        texts[a.transcript.call_id].append((a.transcript.utterance_index, a.transcript.text, a.transcript.language))
    return {
        "calls": k, "call_seconds": _r(statistics.fmean(c.seconds for c in by_id.values())),
        "speech_fraction": _r(sum(c.speech_s for c in by_id.values()) / sum(c.seconds for c in by_id.values())),
        "transcripts": len(mine), "expected_about": expected,
        "end_of_speech_to_received_s": summary(eos),
        "after_endpoint_to_received_s": summary(after_endpoint),
        "worker_endpoint_to_publish_s": {
            q: _r(histogram_quantile(before, after, "callstt_endpoint_to_publish_seconds", float(q[1:]) / 100))
            for q in ("p50", "p95", "p99")},
        "lag": {"early_median_eos_s": _r(early), "late_median_eos_s": _r(late), "grows": grows or missing > k,
                "missing_transcripts": missing,
                "consumer_lag_messages_early": _r(statistics.fmean(lag_values[:lag_third])) if lag_values else None,
                "consumer_lag_messages_late": _r(statistics.fmean(lag_values[-lag_third:])) if lag_values else None},
        "peak_rss_mb_sampled": peak_rss[0] or None,
        # How the worker's model step went: how many utterances each model call carried, and
        # the share of the run the model was busy (near 1: the machine is at its limit).
        "model": _model_use(before, after, duration),
        "accuracy": call_accuracy(by_id, texts),
    }


def _model_use(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, Any]:
    def delta(name: str) -> float:
        return metric_sum(after, name) - metric_sum(before, name)

    calls, utterances = delta("callstt_utterances_per_model_call_count"), delta("callstt_utterances_per_model_call_sum")
    busy = delta('callstt_stage_seconds_total{stage="model"}')
    return {"model_calls": int(calls), "utterances_per_model_call": _r(utterances / calls, 2) if calls else None,
            "model_busy_fraction": _r(busy / seconds, 2) if seconds else None}


def run_inference_modes(router, utterances: list, calls: dict[str, BenchCall], batch_size: int) -> dict[str, Any]:
    """(a) single, (b) batched, (c) packed on the same utterances, all ready at once, each with the
    worker's whole model step (`choose_and_transcribe`: language choice and detection included)."""
    from models.batching import PendingUtterance, choose_and_transcribe
    from streams.core.transcripts import is_non_speech

    pending = [PendingUtterance(stream=u.call_id, audio=u.audio, hint=None, sticky_language=None,
                                sticky_probability=0.0) for u in utterances]
    audio_s = sum(len(u.audio) for u in utterances) / 16000
    modes = {}
    for mode in ("single", "batched", "packed"):
        started = time.perf_counter()
        decisions = choose_and_transcribe(router, pending, mode=mode, batch_size=batch_size)
        seconds = time.perf_counter() - started
        texts: dict[str, list] = defaultdict(list)
        for utterance, decided in zip(utterances, decisions):
            if not is_non_speech(decided.result):
                texts[utterance.call_id].append((utterance.index, decided.result.text, decided.choice.language))
        modes[mode] = {"seconds": _r(seconds), "utterances_per_second": _r(len(pending) / seconds),
                       "audio_seconds_per_second": _r(audio_s / seconds),
                       "wer_en": call_accuracy(calls, texts)["wer_en"],
                       "wer_vi": _wer_language(calls, texts, "vi")}
    base = modes["single"]
    for mode in modes.values():
        mode["speedup_vs_single"] = _r(base["seconds"] / mode["seconds"]) if mode["seconds"] else None
        mode["wer_en_delta_points"] = (_r(100 * (mode["wer_en"] - base["wer_en"]), 2)
                                       if mode["wer_en"] is not None and base["wer_en"] is not None else None)
    eligible = [name for name, m in modes.items()
                if m["wer_en_delta_points"] is not None and m["wer_en_delta_points"] <= 1.0]
    best = max(eligible, key=lambda name: modes[name]["utterances_per_second"]) if eligible else "single"
    return {"utterances": len(pending), "audio_seconds": _r(audio_s), "batch_size": batch_size,
            "modes": modes, "best_within_1_point_wer": best}


def _wer_language(calls: dict[str, BenchCall], texts: dict[str, list], language: str) -> float | None:
    from models.scoring import word_error_rate

    refs = [" ".join(c.sentences) for cid, c in calls.items() if c.language == language]
    hyps = [" ".join(t for _, t, _ in sorted(texts.get(cid, []))) for cid, c in calls.items() if c.language == language]
    return _r(word_error_rate(refs, hyps, language)) if refs else None


# --- the command ----------------------------------------------------------------------------

def run_bench(quick: bool = False, out_dir: Path | str = ".local/bench", bootstrap: str | None = None,
              settings=None, seed: int = 7, live_calls: list[int] | None = None,
              live_seconds: float | None = None, batch_size: int = 8) -> dict[str, Any]:
    """Run every section; write bench.json and bench.md into `out_dir`; return the report.

    `bootstrap` None starts (and afterwards stops) a broker of its own (scripts/kafka_local.py,
    name "bench", port 39092). `settings` default: streams.settings.Settings.from_env(); the
    floor and the worker use its model, compute type, device, threads and beam size.
    """
    from streams.settings import Settings
    from streams.worker.runner import build_router

    settings = settings or Settings.from_env()
    for noisy in ("faster_whisper", "httpx"):  # one INFO line per model call / per scrape otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not settings.cpu_threads:
        settings = settings.with_overrides(cpu_threads=len(os.sched_getaffinity(0)))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    live_calls = live_calls or ([1, 2] if quick else [1, 2, 4, 8, 12])
    live_seconds = live_seconds or (15.0 if quick else 120.0)
    run_id = uuid.uuid4().hex[:6]
    total_started = time.monotonic()
    report: dict[str, Any] = {
        "command": "callstt bench" + (" --quick" if quick else ""), "quick": quick, "seed": seed,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
        "settings": {"model": settings.model, "compute_type": settings.compute_type, "device": settings.device,
                     "cpu_threads": settings.cpu_threads, "beam_size": settings.beam_size,
                     "inference_mode": settings.inference_mode,
                     "min_silence_ms": settings.min_silence_ms, "max_utterance_ms": settings.max_utterance_ms,
                     "audio": f"{SAMPLE_RATE} Hz {ENCODING}, {CHUNK_MS} ms chunks", "worker_partitions": 3},
    }

    synth = Synth()
    fast_calls = make_workload(seed, english=2 if quick else 4, vietnamese=1 if quick else 2,
                               sentences=3 if quick else 4, silence_s=(0.9, 1.5), synth=synth)
    fast = {f"{run_id}-fast-{call.name}": call for call in fast_calls}
    live_pool = make_workload(seed + 1, english=3, vietnamese=1, sentences=1, silence_s=(1.8, 3.2), synth=synth,
                              min_seconds=live_seconds, prefix="live")
    report["workload"] = {
        "fast_calls": [{"name": c.name, "language": c.language, "seconds": _r(c.seconds, 2),
                        "sentences": len(c.sentences)} for c in fast_calls],
        "live_calls_pool": [{"name": c.name, "language": c.language, "seconds": _r(c.seconds, 2),
                             "speech_fraction": _r(c.speech_s / c.seconds, 2)} for c in live_pool],
        "hints": "none: the worker detects each call's language (sticky after a confident utterance)",
    }

    broker = None
    if bootstrap is None:
        sys.path.insert(0, str(REPO_ROOT / "scripts"))
        from kafka_local import LocalKafka

        broker = LocalKafka(name=BENCH_BROKER_NAME, brokers=1, port=BENCH_BROKER_PORT)
        if not broker.running():
            broker.wipe()
            broker.start()
        else:
            broker = None  # someone else's bench broker: use it, leave it running
        bootstrap = f"127.0.0.1:{BENCH_BROKER_PORT}"
    worker = None
    data_root = Path(tempfile.mkdtemp(prefix="callstt-bench-"))
    try:
        worker_env = {"MODEL_SIZE": settings.model, "COMPUTE_TYPE": settings.compute_type, "DEVICE": settings.device,
                      "OMP_NUM_THREADS": str(settings.cpu_threads), "CALLSTT_BEAM_SIZE": str(settings.beam_size),
                      "CALLSTT_MIN_SILENCE_MS": str(settings.min_silence_ms),
                      "CALLSTT_MAX_UTTERANCE_MS": str(settings.max_utterance_ms),
                      "CALLSTT_INFERENCE_MODE": settings.inference_mode}
        worker = WorkerProcess(bootstrap, data_root, name=f"bench{uuid.uuid4().hex[:8]}", extra_env=worker_env)
        log.info("starting a worker (%s)", worker.name)
        worker.start(timeout=180)
        time.sleep(1.0)
        idle_metrics = worker.metrics()
        report["worker"] = {"start_to_health_200_s": _r(worker.ready_after_s),
                            "model_load_s": _r(idle_metrics.get("callstt_model_load_seconds")),
                            "idle": worker.memory()}

        log.info("floor: the utterances in-process")
        load_started = time.perf_counter()
        router = build_router(settings)
        in_process_load = time.perf_counter() - load_started
        floor = run_floor(router, fast, settings)
        utterances = floor.pop("_utterances")
        floor.pop("_texts")
        floor["model_load_s_in_process"] = _r(in_process_load)
        report["floor"] = floor

        log.info("pipeline: %d calls as fast as possible", len(fast))
        report["pipeline"] = run_pipeline(worker, fast, floor["transcripts"], floor["seconds"],
                                          floor["assembly_seconds_in_process"])
        report["worker"]["after_pipeline"] = worker.memory()

        report["live"] = []
        for k in live_calls:
            log.info("live: %d calls at real-time pace", k)
            report["live"].append(run_live(worker, live_pool, k, seed, run_id))
        report["worker"]["after_live"] = worker.memory()
        report["worker"]["peak_rss_mb"] = report["worker"]["after_live"].get("VmHWM")
        worker.stop()
        worker = None

        ok = [r["calls"] for r in report["live"]
              if r["after_endpoint_to_received_s"]["p95"] is not None
              and r["after_endpoint_to_received_s"]["p95"] < P95_LIMIT_S and not r["lag"]["grows"]]
        tried = [r["calls"] for r in report["live"]]
        floor_rtf = floor["realtime_factor"] or 0
        speech = statistics.fmean(c.speech_s / c.seconds for c in live_pool)
        sustained = [r["calls"] for r in report["live"] if not r["lag"]["grows"] and r["transcripts"] > 0]
        report["capacity"] = {
            "live_calls": max(ok) if ok else 0, "tried": tried,
            # Throughput alone: the most calls kept up with (lag does not grow), whatever the latency.
            "sustained_live_calls": max(sustained) if sustained else 0,
            "limited_by_sweep": bool(ok) and max(ok) == max(tried),
            "rule": f"largest K with p95 (endpoint decision -> transcript received) < {P95_LIMIT_S} s and no lag growth",
            "model_bound_estimate_single": _r(1 / (floor_rtf * speech), 1) if floor_rtf else None,
            "note": "quick mode runs each K for about 15 s: a smoke figure, not a sustained one" if quick else
                    f"each K ran for about {live_seconds:.0f} s",
        }

        log.info("inference modes: single, batched, packed")
        report["inference_modes"] = run_inference_modes(router, utterances, fast, batch_size)
        modes = report["inference_modes"]["modes"]
        best = report["inference_modes"]["best_within_1_point_wer"]
        if best != "single" and floor_rtf:
            report["capacity"][f"model_bound_estimate_{best}"] = _r(
                modes[best]["speedup_vs_single"] / (floor_rtf * speech), 1)
        in_mode = modes.get(settings.inference_mode, {}).get("seconds")
        pipeline_s = report["pipeline"]["seconds"]
        # With packing the pipeline can beat the one-at-a-time floor; this is its cost over the
        # model alone doing the same kind of inference on the same utterances.
        report["pipeline"]["floor_in_worker_mode_s"] = in_mode
        report["pipeline"]["overhead_vs_floor_in_worker_mode"] = (
            _r(pipeline_s / in_mode, 3) if pipeline_s and in_mode else None)
        report["accuracy"] = {"floor": floor["accuracy"], "pipeline": report["pipeline"]["accuracy"],
                              "live": {str(r["calls"]): r["accuracy"] for r in report["live"]}}
    finally:
        if worker is not None:
            worker.stop()
        if broker is not None:
            broker.stop()
        import shutil

        shutil.rmtree(data_root, ignore_errors=True)
    report["bench_seconds"] = _r(time.monotonic() - total_started, 1)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    (out / "bench.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (out / "bench.md").write_text(markdown(report))
    return report


def markdown(report: dict[str, Any]) -> str:
    """The short table people read (the JSON has everything)."""
    m, s = report["machine"], report["settings"]
    floor, pipe, worker, cap = report["floor"], report["pipeline"], report["worker"], report["capacity"]
    lines = [
        f"# {report['command']} ({report['started_at']})", "",
        f"Machine: {m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']}, "
        f"faster-whisper {m['packages'].get('faster-whisper')}, ctranslate2 {m['packages'].get('ctranslate2')}; "
        f"load average at start {m['load_average_at_start']}, at end {m.get('load_average_at_end')}.",
        f"Settings: model {s['model']} {s['compute_type']} on {s['device']}, {s['cpu_threads']} threads, "
        f"beam {s['beam_size']}, silence {s['min_silence_ms']} ms, {s['audio']}.", "",
        "| measure | value |", "|---|---|",
        f"| floor: {floor['utterances']} utterances in-process, sequential | {floor['seconds']} s "
        f"(RTF {floor['realtime_factor']}) |",
        f"| pipeline: same calls, as fast as possible, one worker | {pipe['seconds']} s |",
        f"| **overhead** (pipeline / floor) | **{pipe['overhead']}** "
        f"(pipeline / worker's own model time: {pipe['overhead_vs_worker_model_time']}) |",
        f"| the same floor in the worker's inference mode ({s['inference_mode']}); overhead against it | "
        f"{pipe.get('floor_in_worker_mode_s')} s; {pipe.get('overhead_vs_floor_in_worker_mode')} |",
        "| where the pipeline's time goes (worker metrics), s | " + ", ".join(
            f"{name.removesuffix('_s')} {value}" for name, value in pipe["where_the_time_goes"].items()
            if name.endswith("_s") and name != "assembly_seconds_same_audio_in_process") +
        f" ({pipe['model_calls']} model calls for {pipe['transcripts']} transcripts) |",
    ]
    for live in report["live"]:
        eos, ep = live["end_of_speech_to_received_s"], live["after_endpoint_to_received_s"]
        lines.append(f"| live K={live['calls']} ({live['call_seconds']} s calls, {live['speech_fraction']} speech): "
                     f"end of speech -> received p50/p95/p99 | {eos['p50']} / {eos['p95']} / {eos['p99']} s |")
        model = live.get("model", {})
        lines.append(f"| live K={live['calls']}: after endpoint p50/p95/p99; lag grows; utterances per model "
                     f"call, model busy | {ep['p50']} / {ep['p95']} / {ep['p99']} s; {live['lag']['grows']}; "
                     f"{model.get('utterances_per_model_call')}, {model.get('model_busy_fraction')} |")
    lines += [
        f"| **capacity** (p95 after endpoint < {P95_LIMIT_S} s, no lag growth) | **{cap['live_calls']}** of "
        f"K={cap['tried']}{' (sweep limit)' if cap['limited_by_sweep'] else ''}; model-bound estimate "
        f"{cap.get('model_bound_estimate_single')} one at a time |",
        f"| calls sustained without lag growth (latency aside) | {cap.get('sustained_live_calls')} of K={cap['tried']} |",
        f"| worker start -> /health 200; model load | {worker['start_to_health_200_s']} s; {worker['model_load_s']} s |",
        f"| worker RSS idle / peak (VmHWM) | {worker['idle'].get('VmRSS')} MB / {worker.get('peak_rss_mb')} MB |",
        f"| WER en: floor / pipeline | {floor['accuracy']['wer_en']} / {pipe['accuracy']['wer_en']} |",
        f"| language-ID accuracy: floor / pipeline | {floor['accuracy']['language_id_accuracy']} / "
        f"{pipe['accuracy']['language_id_accuracy']} |",
    ]
    modes = report.get("inference_modes")
    if modes:
        for name, mode in modes["modes"].items():
            lines.append(f"| inference {name}: utterances/s, speedup, WER en (delta pts), WER vi | "
                         f"{mode['utterances_per_second']}, x{mode['speedup_vs_single']}, {mode['wer_en']} "
                         f"({mode['wer_en_delta_points']}), {mode['wer_vi']} |")
        lines.append(f"| best inference mode within 1 WER point | {modes['best_within_1_point_wer']} |")
    lines += ["", f"Bench took {report['bench_seconds']} s. Full figures: bench.json."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """`python -m streams.bench [--quick] [--output DIR] [--bootstrap HOST:PORT]` (until cli.py has `bench`)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m streams.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K = 1, 2 for ~20 s each: a couple of minutes")
    parser.add_argument("--output", default=".local/bench", help="folder for bench.json and bench.md")
    parser.add_argument("--bootstrap", default=None, help="a running broker (default: start one on port 39092)")
    parser.add_argument("--calls", default=None, help="live K values, comma-separated (default 1,2,4,8,12)")
    parser.add_argument("--live-seconds", type=float, default=None, help="length of each live call")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    calls = [int(k) for k in args.calls.split(",")] if args.calls else None
    report = run_bench(quick=args.quick, out_dir=args.output, bootstrap=args.bootstrap, live_calls=calls,
                       live_seconds=args.live_seconds)
    print(markdown(report))


if __name__ == "__main__":
    main()
