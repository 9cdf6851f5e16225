"""The worker's Prometheus metrics (served on /metrics by the worker's web server).

Names follow Prometheus conventions: a unit suffix, `_total` for counters.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)

CHUNKS = Counter("callstt_chunks_total", "Audio chunks received", registry=REGISTRY)
CHUNK_BYTES = Counter("callstt_chunk_bytes_total", "Audio payload bytes received", registry=REGISTRY)
DEAD_LETTERS = Counter("callstt_chunks_dropped_total",
                       "Input records rejected to the dead-letter topic, by reason", ["reason"], registry=REGISTRY)
DUPLICATE_CHUNKS = Counter("callstt_duplicate_chunks_total", "Chunks ignored as duplicates", registry=REGISTRY)
GAP_CHUNKS = Counter("callstt_gap_chunks_total", "Missing chunks filled with silence", registry=REGISTRY)
UTTERANCES = Counter("callstt_utterances_total", "Utterances cut, by end reason", ["reason"], registry=REGISTRY)
TRANSCRIPTS = Counter("callstt_transcripts_total", "Transcripts published", ["language", "model"],
                      registry=REGISTRY)
CALL_SETTINGS = Counter("callstt_call_settings_total", "Call-settings records applied (set), tombstones (cleared), "
                        "settings forgotten after CALLSTT_CALL_SETTINGS_TTL_S (expired)",
                        ["action"], registry=REGISTRY)
REDACTIONS = Counter("callstt_redactions_total", "Spans redacted from transcripts, by kind", ["kind"], registry=REGISTRY)
GUARD_DROPPED = Counter("callstt_guard_dropped_total", "Utterances whose text the guard dropped as invented, by rule",
                        ["reason"], registry=REGISTRY)
SILENT_UTTERANCES = Counter("callstt_silent_utterances_total", "Utterances the model found no speech in",
                            registry=REGISTRY)
ACTIVE_STREAMS = Gauge("callstt_active_streams", "Streams with state on this worker", registry=REGISTRY)
HELD_RECORDS = Gauge("callstt_held_records", "Records processed but not yet committable: their stream's changes wait "
                     "for its next checkpoint (CALLSTT_CHECKPOINT_INTERVAL_S)", registry=REGISTRY)
BUFFERED_SECONDS = Gauge("callstt_buffered_audio_seconds", "Audio held for open utterances", registry=REGISTRY)
UTTERANCE_SECONDS = Histogram("callstt_utterance_duration_seconds", "Audio length per utterance",
                              buckets=(0.5, 1, 2, 4, 8, 15, 30), registry=REGISTRY)
INFERENCE_SECONDS = Histogram("callstt_inference_seconds", "Model time per utterance",
                              buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16), registry=REGISTRY)
REALTIME_FACTOR = Histogram("callstt_realtime_factor_ratio", "Model time / audio time per utterance",
                            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2), registry=REGISTRY)
END_OF_SPEECH_LATENCY = Histogram(
    "callstt_end_of_speech_to_publish_seconds",
    "From the capture time of an utterance's last audio to its transcript being acknowledged",
    buckets=LATENCY_BUCKETS, registry=REGISTRY)
ENDPOINT_LATENCY = Histogram(
    "callstt_endpoint_to_publish_seconds",
    "From the endpoint decision (utterance cut) to its transcript being acknowledged",
    buckets=LATENCY_BUCKETS, registry=REGISTRY)
BROKER_REPLY_AGE = Gauge("callstt_broker_reply_age_seconds",
                         "Seconds since the broker last answered the worker's metadata probe (streams/worker/broker_probe.py)",
                         registry=REGISTRY)
STALLED_SECONDS = Gauge("callstt_stalled_seconds",
                        "How long the worker has been stalled: failing in a way retrying cannot mend, or for longer "
                        "than CALLSTT_STALL_AFTER_S (0: it is not); it exits at CALLSTT_STALL_EXIT_AFTER_S",
                        registry=REGISTRY)
MODEL_LOAD_SECONDS = Gauge("callstt_model_load_seconds", "Time taken to load the models", registry=REGISTRY)
CONSUMER_LAG = Gauge("callstt_consumer_lag_messages", "Audio records not yet done (transcribed, state stored), per partition: the backlog",
                     ["partition"], registry=REGISTRY)

UTTERANCES_PER_MODEL_CALL = Histogram("callstt_utterances_per_model_call", "Utterances transcribed together in one go",
                                      buckets=(1, 2, 4, 8, 16, 32, 64), registry=REGISTRY)
SPECULATIVE = Counter("callstt_speculative_utterances_total",
                      "Utterances cut speculatively (CALLSTT_SPECULATE_MS): run by the model, used as the final "
                      "result, discarded because speech came back, skipped while the worker was behind",
                      ["outcome"], registry=REGISTRY)
SPECULATIVE_WASTED_SECONDS = Counter("callstt_speculative_wasted_seconds_total",
                                     "Model time spent on speculative utterances that were discarded",
                                     registry=REGISTRY)
INTERIMS = Counter("callstt_interims_total",
                   "Interim cuts of open utterances (CALLSTT_PARTIAL_INTERVAL_MS): published, skipped (finals "
                   "waiting, a newer interim of the stream, the worker behind, no room), dropped (no text)",
                   ["outcome"], registry=REGISTRY)
SPECULATIVE_OUTCOMES = ("run", "used", "discarded", "skipped")
INTERIM_OUTCOMES = ("published", "skipped", "dropped", "failed")
INTERIM_LATENCY = Histogram(
    "callstt_interim_latency_seconds",
    "From the capture time of an interim's last audio to the interim being acknowledged",
    buckets=LATENCY_BUCKETS, registry=REGISTRY)
EVENTS_PER_BATCH = Histogram("callstt_events_per_batch", "Input records the agent handled as one batch",
                             buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000), registry=REGISTRY)
BATCH_FAILURES = Counter("callstt_batch_failures_total",
                         "Batches that failed and were retried (their records stay unacknowledged until done)",
                         registry=REGISTRY)
# Where the worker's time goes, for the benchmark's overhead breakdown: avro_decode (input
# records), audio_decode (G.711/PCM decode and resampling), vad, assembly (sequencing,
# endpointing, state bookkeeping), model (language choice and transcription), model_interims
# (the same for interim cuts, after the finals), publish (Avro
# encode, produce, wait for acks), table_writes. The rest of a worker's wall time is Kafka
# fetches, commits and waiting for input.
STAGE_SECONDS = Counter("callstt_stage_seconds_total", "Worker time spent per stage of the data path",
                        ["stage"], registry=REGISTRY)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS.labels(stage).inc(time.perf_counter() - started)


def render() -> bytes:
    return generate_latest(REGISTRY)
