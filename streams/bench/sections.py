"""The sections that run the worker subprocess: the pipeline (the fast calls as fast as the
producer can), live (K conversations at real-time pace: streams/bench/workload.py), and the
capacity those live runs show. Transcripts come back through streams/bench/collecting.py."""

from __future__ import annotations

import logging
import random
import statistics
import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np

from callstt.streams.bench import broker_bytes
from callstt.streams.bench.collecting import Arrival, RecordCollector, collect
from callstt.streams.bench.evaluation.scoring import error_rate
from callstt.streams.bench.floor import call_accuracy
from callstt.streams.bench.interims import interim_figures
from callstt.streams.bench.stages import stage_figures
from callstt.streams.bench.stats import _r, histogram_quantile, metric_sum, summary
from callstt.streams.bench.subprocesses import WorkerSubprocess
from callstt.streams.bench.workload import ENCODING, TELEPHONE_RATE, BenchCall, Conversation
from callstt.streams.client.producer import PLATFORM_CHUNK_MS, CallPublisher, ChunkPlan
from callstt.streams.client.publishing import CallInput, CallJob, send_calls
from callstt.streams.client.reader import TranscriptReader

log = logging.getLogger("callstt.bench")

# Capacity: p95 from the end of speech (the capture time of the utterance's last audio) to the
# transcript received at most this: the 600 ms silence hangover + 1.0 s. Counted from the end
# of speech, not from the endpoint decision, which hides the wait while chunks sit unread.
P95_LIMIT_S = 1.6
# A looser bound, beside it: the largest K whose p95 stays under this, its lag not growing.
P95_USABLE_S = 3.0
# Whether latency stayed bounded can be told only from a run this long, with this many finals
# (a third of them early, a third late, compared): shorter runs say "too short to tell".
BOUNDED_MIN_SECONDS = 60.0
BOUNDED_MIN_FINALS = 12


def _texts(arrivals: list[Arrival]) -> dict[str, list]:
    """(utterance index, text, language) per call, what `call_accuracy` scores."""
    texts: dict[str, list] = defaultdict(list)
    for a in arrivals:
        texts[a.transcript.call_id].append((a.transcript.utterance_index, a.transcript.text, a.transcript.language))
    return texts


# --- pipeline: the fast calls, as fast as possible ------------------------------------------

def run_pipeline(worker: WorkerSubprocess, calls: dict[str, BenchCall], expected: int, floor_s: float,
                 assembly_s: float) -> dict[str, Any]:
    jobs = [CallJob(call_id, "caller", CallInput(call.name, call.samples, TELEPHONE_RATE)) for call_id, call in calls.items()]
    before = worker.metrics()
    reader = TranscriptReader(worker.bootstrap, worker.transcript_topic, from_beginning=True)
    publisher = CallPublisher(worker.bootstrap, worker.audio_topic)
    try:
        started_ms = int(time.time() * 1000)
        started = time.monotonic()
        send_calls(publisher, jobs, ChunkPlan(TELEPHONE_RATE, ENCODING, PLATFORM_CHUNK_MS))
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
    # to the microsecond: with the audio kept by reference (issue 26) the table writes of a whole
    # section take well under a millisecond, which 3 decimals showed as 0
    stages = {stage: _r(metric_sum(after, f'callstt_stage_seconds_total{{stage="{stage}"}}')
                        - metric_sum(before, f'callstt_stage_seconds_total{{stage="{stage}"}}'), 6)
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
            # The reading stages overlap the model (the worker reads while the model runs), so the
            # stages can add up to more than the wall time: then nothing is left for Kafka and waiting.
            "kafka_and_waiting_s": _r(max(wall_s - accounted, 0.0)) if wall_s else None,
            "assembly_seconds_same_audio_in_process": _r(assembly_s),
            "note": "worker stage times: callstt_stage_seconds_total deltas on its /metrics (avro_decode: "
                    "Avro decode of chunks; audio_decode: G.711/PCM decode and resampling; vad: Silero VAD; "
                    "assembly: sequencing, endpointing and state bookkeeping; "
                    "model: language choice and transcription; publish: Avro encode, produce, acks; "
                    "table_writes: state and audio blocks into the table and its changelog); the rest is "
                    "Kafka fetches, commits and the worker waiting for input (reading, decoding, VAD and "
                    "assembly go on while the model runs: the stages may add up to more than the wall time)",
        },
        "accuracy": call_accuracy(calls, _texts(mine)),
    }


# --- live: K calls at real-time pace --------------------------------------------------------

def _live_jobs(calls: list[Conversation], k: int, seed: int,
               run_id: str) -> tuple[list, dict[str, Conversation]]:
    """K conversations from the pool (both streams of each), each after a random lead of silence
    (so they start apart)."""
    rng = random.Random(seed + k)
    jobs, by_id = [], {}
    for index in range(k):
        call = calls[index % len(calls)]
        lead = np.zeros(int(rng.uniform(0, 3.0) * call.sample_rate), dtype=np.float32)  # calls start apart
        call_id = f"{run_id}-live{k}-{index}"
        by_id[call_id] = call
        plan = ChunkPlan(call.sample_rate, call.encoding, PLATFORM_CHUNK_MS)
        for stream_id in call.streams:
            samples = np.concatenate([lead, call.stream_audio(stream_id)])
            jobs.append(CallJob(call_id, stream_id, CallInput(f"{call.name}/{stream_id}", samples, call.sample_rate),
                                plan=plan))
    return jobs, by_id


def conversation_accuracy(calls: dict[str, Conversation], arrivals: list[Arrival]) -> dict[str, Any]:
    """WER per language over every stream (its transcripts joined in utterance order against what
    its participant said) and language-ID accuracy (share of transcripts in the call's language)."""
    said: dict[tuple[str, str], list] = defaultdict(list)
    right = total = 0
    for a in arrivals:
        t = a.transcript
        if t.call_id in calls:
            said[(t.call_id, t.stream_id)].append((t.utterance_index, t.text))
            total += 1
            right += t.language == calls[t.call_id].language
    rates = {}
    for language in sorted({call.language for call in calls.values()}):
        keys = [(call_id, stream) for call_id, call in calls.items() if call.language == language
                for stream in call.streams if call.references(stream)]
        _, rate = error_rate(language, [calls[c].references(s) for c, s in keys],
                             [" ".join(text for _, text in sorted(said.get((c, s), []))) for c, s in keys])
        rates[f"wer_{language}"] = _r(rate)
    return {**rates, "language_id_accuracy": _r(right / total) if total else None, "transcripts": total}


class _LiveSampler:
    """collect's `on_poll` during a live run: at most once a second, the worker's consumer lag
    and RSS; says whether publishing still goes on."""

    def __init__(self, worker: WorkerSubprocess, publishing_done: threading.Event) -> None:
        self.worker, self.done = worker, publishing_done
        self.started = time.monotonic()
        self.last_sample = 0.0
        self.lag_samples: list[tuple[float, float]] = []
        self.peak_rss = 0.0

    def __call__(self) -> bool:
        if time.monotonic() - self.last_sample >= 1.0:
            self.last_sample = time.monotonic()
            try:
                self.lag_samples.append((time.monotonic() - self.started,
                                         metric_sum(self.worker.metrics(), "callstt_consumer_lag_messages")))
            except Exception:  # a slow scrape under load is not a failure
                pass
            self.peak_rss = max(self.peak_rss, self.worker.memory().get("VmRSS", 0.0))
        return not self.done.is_set()


def _latencies(arrivals: list[Arrival]) -> tuple[list[float], list[float], list[tuple[int, float]]]:
    """End of speech -> received and endpoint decision -> received, in seconds; and the former
    by capture time (sorted), for the lag trend."""
    eos, after_endpoint, points = [], [], []
    for a in arrivals:
        t = a.transcript
        if t.last_audio_capture_ts_ms > 0:
            eos.append((a.arrived_ms - t.last_audio_capture_ts_ms) / 1000)
            points.append((t.last_audio_capture_ts_ms, eos[-1]))
        if t.last_audio_received_ts_ms > 0:
            after_endpoint.append((a.arrived_ms - t.last_audio_received_ts_ms) / 1000)
    points.sort()
    return eos, after_endpoint, points


def _lag(points: list[tuple[int, float]], lag_values: list[float], missing: int, k: int) -> dict[str, Any]:
    third = max(1, len(points) // 3)
    early = statistics.median(v for _, v in points[:third]) if points else None
    late = statistics.median(v for _, v in points[-third:]) if points else None
    # Lag grows when the late transcripts wait clearly longer than the early ones (a backlog builds),
    # or transcripts are missing at the end.
    grows = bool(points) and len(points) >= 3 and late - early > max(1.0, 0.5 * early)
    lag_third = max(1, len(lag_values) // 3)
    return {"early_median_eos_s": _r(early), "late_median_eos_s": _r(late), "grows": grows or missing > k,
            "missing_transcripts": missing,
            "consumer_lag_messages_early": _r(statistics.fmean(lag_values[:lag_third])) if lag_values else None,
            "consumer_lag_messages_late": _r(statistics.fmean(lag_values[-lag_third:])) if lag_values else None}


def wait_for_backlog(worker: WorkerSubprocess, limit_s: float = 300.0) -> float:
    """Wait (at most `limit_s`) until the worker has read all its audio (consumer lag 0): a run
    that started while the worker was still behind on the previous one would count that run's
    backlog as its own latency. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        try:
            if metric_sum(worker.metrics(), "callstt_consumer_lag_messages") == 0:
                break
        except Exception:  # a slow scrape under load: try again
            pass
        time.sleep(1.0)
    return _r(time.monotonic() - started)


def run_live(worker: WorkerSubprocess, calls: list[Conversation], k: int, seed: int, run_id: str) -> dict[str, Any]:
    """K conversations at real-time pace, staggered starts, once the worker has caught up with
    what came before; latency per transcript and the lag trend."""
    waited_for_backlog = wait_for_backlog(worker)
    jobs, by_id = _live_jobs(calls, k, seed, run_id)
    # A turn gives one transcript or more (a long one is cut at a pause): read until quiet.
    expected = sum(len(call.turns) for call in by_id.values())
    before = worker.metrics()
    topics = broker_bytes.run_topics(worker)
    marks = broker_bytes.end_offsets(worker, topics.values())
    reader = TranscriptReader(worker.bootstrap, worker.transcript_topic, from_beginning=True)
    interims = RecordCollector.interims(TranscriptReader(worker.bootstrap, worker.partial_topic, from_beginning=True),
                                set(by_id), time.monotonic() + max(c.seconds for c in by_id.values()) + 150.0)
    publisher = CallPublisher(worker.bootstrap, worker.audio_topic)
    done = threading.Event()

    def produce() -> None:
        try:
            send_calls(publisher, jobs, ChunkPlan(TELEPHONE_RATE, ENCODING, PLATFORM_CHUNK_MS), realtime=True)
            publisher.flush()
        finally:
            done.set()

    sampler = _LiveSampler(worker, done)
    thread = threading.Thread(target=produce, name=f"live-{k}", daemon=True)
    interims.start()
    thread.start()
    duration = max(call.seconds for call in by_id.values()) + 3.0
    try:
        arrivals = collect(reader, None, time.monotonic() + duration + 120.0, idle_s=10.0, on_poll=sampler,
                           wanted=set(by_id))
    finally:
        interims.stop()
        thread.join(timeout=duration + 60)
        reader.close()
    after = worker.metrics()
    mine = [a for a in arrivals if a.transcript.call_id in by_id]
    eos, after_endpoint, points = _latencies(mine)
    written = broker_bytes.written_since(worker, marks, set(by_id))
    return {
        "calls": k, "call_seconds": _r(statistics.fmean(c.seconds for c in by_id.values())),
        "speech_fraction": _r(sum(c.speech_s for c in by_id.values()) / sum(c.seconds for c in by_id.values())),
        "transcripts": len(mine), "expected_about": expected,
        "waited_for_backlog_s": waited_for_backlog,  # the worker was still behind on the previous run
        "end_of_speech_to_received_s": summary(eos),
        "after_endpoint_to_received_s": summary(after_endpoint),
        "worker_endpoint_to_publish_s": {
            q: _r(histogram_quantile(before, after, "callstt_endpoint_to_publish_seconds", float(q[1:]) / 100))
            for q in ("p50", "p95", "p99")},
        "lag": _lag(points, [v for _, v in sampler.lag_samples], max(expected - len(mine), 0), k),
        "peak_rss_mb_sampled": sampler.peak_rss or None,
        # How the worker's model step went: how many utterances each model call carried, and
        # the share of the run the model was busy (near 1: the machine is at its limit).
        "model": _model_use(before, after, duration),
        # Interim transcripts (partial topic): how soon words show, how many the final changed,
        # and the model time they took (streams/bench/interims.py).
        "interims": interim_figures(interims.arrivals, mine, before, after, duration),
        "accuracy": conversation_accuracy(by_id, mine),
        # Where each final's time went (the worker's per-utterance stage records).
        "stages": stage_figures(worker.stages(set(by_id)), mine),
        # What the run's calls cost the brokers, per second of call (streams/bench/broker_bytes.py).
        "kafka_writes": broker_bytes.per_call_second(written, sum(c.seconds for c in by_id.values()), topics),
    }


def _model_use(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, Any]:
    def delta(name: str) -> float:
        return metric_sum(after, name) - metric_sum(before, name)

    calls, utterances = delta("callstt_utterances_per_model_call_count"), delta("callstt_utterances_per_model_call_sum")
    busy = delta('callstt_stage_seconds_total{stage="model"}')
    busy_interims = delta('callstt_stage_seconds_total{stage="model_interims"}')
    speculative = {outcome: int(delta(f'callstt_speculative_utterances_total{{outcome="{outcome}"}}'))
                   for outcome in ("run", "used", "discarded", "skipped")}
    wasted = delta("callstt_speculative_wasted_seconds_total")
    return {"model_calls": int(calls), "utterances_per_model_call": _r(utterances / calls, 2) if calls else None,
            # Finals alone (as before interims existed), and with the interims' model time too:
            # the latter is what bounds capacity when interims are on.
            "model_busy_fraction": _r(busy / seconds, 2) if seconds else None,
            "model_busy_fraction_with_interims": _r((busy + busy_interims) / seconds, 2) if seconds else None,
            # Speculative endpoints (streams/core/speculation.py): what ran, and the share of the
            # model's time spent on speculations that speech coming back made useless.
            "speculative": speculative, "speculative_wasted_share": _r(wasted / busy, 3) if busy else None}


# --- capacity: what the live runs show ------------------------------------------------------

def speech_fraction(calls: list[Conversation]) -> float:
    """The mean share of speech in the live calls."""
    return statistics.fmean(c.speech_s / c.seconds for c in calls)


def model_bound_estimate(speedup: float, floor_rtf: float, speech: float) -> float | None:
    """Live calls the model alone could carry: `speedup` times the floor's speed, over the speech."""
    return _r(speedup / (floor_rtf * speech), 1)


def bounded(run: dict[str, Any], live_seconds: float) -> bool | None:
    """Whether the run's latency stayed bounded (its lag did not grow from the first third of its
    finals to the last, none missing); None when the run is too short to tell."""
    if live_seconds < BOUNDED_MIN_SECONDS or run["transcripts"] < BOUNDED_MIN_FINALS:
        return None
    return not run["lag"]["grows"]


def _within(run: dict[str, Any], limit_s: float) -> bool:
    p95 = run["end_of_speech_to_received_s"]["p95"]
    return p95 is not None and p95 <= limit_s and not run["lag"]["grows"]


def capacity(live: list[dict[str, Any]], floor_rtf: float, speech: float, quick: bool,
             live_seconds: float) -> dict[str, Any]:
    """The largest K whose live run kept p95 from the end of speech within P95_LIMIT_S without lag
    growth; beside it, the largest K within P95_USABLE_S and whether each K's latency stayed bounded."""
    ok = [r["calls"] for r in live if _within(r, P95_LIMIT_S)]
    usable = [r["calls"] for r in live if _within(r, P95_USABLE_S)]
    tried = [r["calls"] for r in live]
    return {
        "live_calls": max(ok) if ok else 0, "tried": tried,
        f"live_calls_p95_under_{P95_USABLE_S:g}_s": max(usable) if usable else 0,
        # Per K: lag not growing over a run long enough to tell (None: too short). A K can be
        # bounded with a p95 far above any usable latency: both figures are needed.
        "latency_bounded": {str(r["calls"]): bounded(r, live_seconds) for r in live},
        "limited_by_sweep": bool(ok) and max(ok) == max(tried),
        "rule": f"largest K with p95 (end of speech -> transcript received) <= {P95_LIMIT_S} s and no lag growth",
        "model_bound_estimate_single": model_bound_estimate(1, floor_rtf, speech) if floor_rtf else None,
        "note": "quick mode runs each K for about 15 s: a smoke figure, not a sustained one" if quick else
                f"each K ran for about {live_seconds:.0f} s",
    }
