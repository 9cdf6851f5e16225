"""The producer library: how a call platform publishes a call's audio as AudioChunk events.

Importable on its own (`from streams.client.producer import CallPublisher`), so a platform can
embed the same code as `callstt publish`. Records are keyed by call ID and partitioned
with murmur2, the hash Java clients and Faust use, so every producer sends a call to the
same partition.

    with CallPublisher("127.0.0.1:9092", "callstt.audio") as publisher:
        publisher.publish_call(samples_8k, call_id="c1", stream_id="caller", sample_rate=8000,
                               encoding="MULAW", chunk_ms=20, language="vi")
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from confluent_kafka import Producer

from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.schemas.codec import AvroCodec
from callstt.schemas.records import AudioChunk, Encoding
from callstt.streams.client.kafka import RELIABLE_PRODUCER

# What call platforms usually send: 20 ms chunks (the most records per second, so the most work
# per call); the default of `callstt publish`, the bench and the tests' calls.
PLATFORM_CHUNK_MS = 20


def load_audio(path: Path | str, sample_rate: int) -> np.ndarray:
    """Any file PyAV/ffmpeg reads (WAV, MP3, FLAC, OGG/Opus...) as mono float32 at `sample_rate`."""
    # an embedding platform loads no model stack unless it reads files
    from faster_whisper.audio import decode_audio

    return decode_audio(str(path), sampling_rate=sample_rate)


# --- G.711 and PCM encoding (vectorised) -------------------------------------------------------

def _to_int16(samples: np.ndarray) -> np.ndarray:
    """The inverse of the decoder's k / 32768 (models/audio/decoding.py), rounded: audio that came from
    16-bit samples (a WAV file, a phone line) goes through unchanged, not truncated towards zero."""
    return np.round(np.clip(samples, -1.0, 32767 / 32768) * 32768.0).astype(np.int16)


def encode_mulaw(pcm: np.ndarray) -> bytes:
    """16-bit linear samples to G.711 mu-law codes (14-bit magnitude, bias 33, as ITU-T G.711)."""
    value = pcm.astype(np.int32) >> 2
    mask = np.where(value < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(value), 8159) + 33
    segment = np.maximum(0, np.floor(np.log2(magnitude)).astype(np.int32) - 5)
    code = np.where(segment >= 8, 0x7F, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F))
    return (code ^ mask).astype(np.uint8).tobytes()


def encode_alaw(pcm: np.ndarray) -> bytes:
    """16-bit linear samples to G.711 A-law codes."""
    value = pcm.astype(np.int32) >> 3  # A-law works on 13-bit magnitudes
    sign = np.where(value >= 0, 0x80, 0x00)
    magnitude = np.where(value >= 0, value, -value - 1)
    magnitude = np.minimum(magnitude, 0xFFF)
    exponent = np.where(magnitude >= 32, np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 4, 0)
    mantissa = np.where(exponent > 0, (magnitude >> exponent) & 0x0F, (magnitude >> 1) & 0x0F)
    return ((sign | (exponent << 4) | mantissa) ^ 0x55).astype(np.uint8).tobytes()


def encode_samples(samples: np.ndarray, encoding: str) -> bytes:
    """Mono float32 samples in [-1, 1] as the payload bytes of `encoding`."""
    pcm = _to_int16(samples)
    if encoding == Encoding.PCM_S16LE:
        return pcm.astype("<i2").tobytes()
    if encoding == Encoding.MULAW:
        return encode_mulaw(pcm)
    if encoding == Encoding.ALAW:
        return encode_alaw(pcm)
    raise ValueError(f"unknown encoding {encoding!r}: use PCM_S16LE, MULAW or ALAW")


# --- publishing ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChunkPlan:
    """How a call's audio is cut into chunks (by default as call platforms usually send it)."""

    sample_rate: int = SAMPLE_RATE
    encoding: str = "PCM_S16LE"
    chunk_ms: int = PLATFORM_CHUNK_MS


# The audio callstt publishes itself (POST /transcribe uploads, the speaker's synthesized legs):
# 16 kHz PCM in 100 ms chunks, five times fewer records than a platform's 20 ms ones.
OWN_CHUNK_PLAN = ChunkPlan(SAMPLE_RATE, "PCM_S16LE", 100)


def iter_chunks(samples: np.ndarray, call_id: str, stream_id: str, plan: ChunkPlan, start_ms: int,
                language: str | None = None, first_seq: int = 0) -> Iterator[AudioChunk]:
    """The AudioChunk events of one stream; the last one carries end_of_stream."""
    per_chunk = max(1, plan.sample_rate * plan.chunk_ms // 1000)
    count = max(1, -(-len(samples) // per_chunk))
    for index in range(count):
        piece = samples[index * per_chunk:(index + 1) * per_chunk]
        yield AudioChunk(
            call_id=call_id, stream_id=stream_id, seq=first_seq + index,
            capture_ts_ms=start_ms + index * plan.chunk_ms, sample_rate=plan.sample_rate,
            encoding=Encoding(plan.encoding), channels=1, payload=encode_samples(piece, plan.encoding),
            language=language, end_of_stream=index == count - 1,
        )


class CallPublisher:
    """Publishes AudioChunk events (Avro, Confluent framing) keyed by call ID."""

    def __init__(self, bootstrap_servers: str, topic: str, codec: AvroCodec | None = None,
                 extra_config: dict | None = None) -> None:
        self.topic = topic
        self.codec = codec or AvroCodec()
        self.failed: list[str] = []  # deliveries the broker refused for good (after librdkafka's retries)
        self.producer = Producer({
            "bootstrap.servers": bootstrap_servers,
            **RELIABLE_PRODUCER,  # acks=all, idempotence, murmur2 (the partitioner Java clients and Faust use)
            "linger.ms": 5,
            **(extra_config or {}),
        })

    def send(self, chunk: AudioChunk) -> None:
        self.send_raw(chunk.call_id, self.codec.encode_chunk(chunk, self.topic))

    def send_raw(self, call_id: str, value: bytes) -> None:
        """Send an already-encoded value (also how tests send hostile bytes)."""
        while True:
            try:
                self.producer.produce(self.topic, key=call_id.encode(), value=value, on_delivery=self._delivered)
                break
            except BufferError:  # local queue full: let deliveries drain
                self.producer.poll(0.1)
        self.producer.poll(0)

    def publish_call(self, samples: np.ndarray, call_id: str, stream_id: str = "caller",
                     sample_rate: int = SAMPLE_RATE, encoding: str = "PCM_S16LE", chunk_ms: int = PLATFORM_CHUNK_MS,
                     language: str | None = None, realtime: bool = False, start_ms: int | None = None) -> int:
        """Publish one stream of a call (samples already at `sample_rate`); returns the chunk count."""
        plan = ChunkPlan(sample_rate, encoding, chunk_ms)
        start_ms = int(time.time() * 1000) if start_ms is None else start_ms
        started = time.monotonic()
        sent = 0
        for chunk in iter_chunks(samples, call_id, stream_id, plan, start_ms, language):
            if realtime:
                delay = started + sent * chunk_ms / 1000 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self.send(chunk)
            sent += 1
        return sent

    def _delivered(self, error, message) -> None:
        if error is not None:
            self.failed.append(f"{message.key()!r} partition {message.partition()}: {error.str()}")

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every chunk's acknowledgement; raise when one is missing or was refused."""
        remaining = self.producer.flush(timeout)
        if remaining:
            raise RuntimeError(f"{remaining} audio chunks were not acknowledged by the broker within {timeout}s")
        if self.failed:
            raise RuntimeError(f"{len(self.failed)} audio chunks were refused by the broker, e.g. {self.failed[0]}")

    def __enter__(self) -> "CallPublisher":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()
