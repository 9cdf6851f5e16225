"""The worker's Prometheus metrics (served on /metrics by the worker's web server)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

CHUNKS = Counter("callstt_chunks_total", "Audio chunks received", registry=REGISTRY)
DEAD_LETTERS = Counter("callstt_dead_letters_total", "Input records rejected to the dead-letter topic",
                       ["reason"], registry=REGISTRY)
DUPLICATE_CHUNKS = Counter("callstt_duplicate_chunks_total", "Chunks ignored as duplicates", registry=REGISTRY)
GAP_CHUNKS = Counter("callstt_gap_chunks_total", "Missing chunks filled with silence", registry=REGISTRY)
UTTERANCES = Counter("callstt_utterances_total", "Utterances cut by the endpointer", ["reason"], registry=REGISTRY)
TRANSCRIPTS = Counter("callstt_transcripts_total", "Transcripts published", ["language", "backend"],
                      registry=REGISTRY)
SILENT_UTTERANCES = Counter("callstt_silent_utterances_total", "Utterances the model found no speech in",
                            registry=REGISTRY)
MODEL_SECONDS = Histogram("callstt_model_seconds", "Model time per utterance",
                          buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16), registry=REGISTRY)
UTTERANCE_SECONDS = Histogram("callstt_utterance_audio_seconds", "Audio length per utterance",
                              buckets=(0.5, 1, 2, 4, 8, 15, 30), registry=REGISTRY)
OPEN_STREAMS = Gauge("callstt_open_streams", "Streams with state on this worker", registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)
