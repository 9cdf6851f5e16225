"""Decoding one audio chunk of a live call into the model's input: 16 kHz mono float32.

This module owns the input audio formats: which encodings, sample rates and channel
counts a chunk may have, the checks that reject a chunk (as `BadChunk` with a
dead-letter reason code), G.711 expansion, downmixing and resampling to 16 kHz.
Everything is vectorised numpy; nothing here knows about Kafka.

Resampling is a streaming polyphase FIR (a Kaiser-windowed sinc), written here in
numpy rather than taken from soxr so that its state is plain data: the last few
input samples and a phase (`ResampleState`, about 100 floats at most), which the
pipeline keeps per stream in a changelog table next to the VAD state. Chunk borders
are therefore seamless: resampling a stream chunk by chunk gives exactly the same
samples as resampling it in one piece. The price is a fixed group delay of 1 to 2 ms
(`group_delay_ms`), the same for the whole stream, far below what endpointing can see;
the last 1 to 2 ms of a stream stay in the filter, where only silence should be.

Two entry points:
- `decode_stream_chunk(..., state) -> (samples, new_state)` for a live stream;
- `decode_chunk(...)` for a chunk on its own (a whole recording, or 16 kHz audio,
  where no state is needed); at other rates it restarts the filter at each call.
"""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass

import numpy as np

from callstt.models.audio.errors import BadChunk
from callstt.schemas.records import Encoding

# The one sample rate of the models' input: every Whisper backend, the VAD and the audio the worker
# stores run at 16 kHz. (Producers may send other rates, SUPPORTED_RATES; they are resampled to this.)
SAMPLE_RATE = 16000
# Standard telephony and media rates; each gives a small up/down ratio to 16 kHz. An arbitrary
# rate such as 8001 Hz would need a 16000-phase filter, and is a producer bug anyway.
SUPPORTED_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
MAX_CHANNELS = 8
DEFAULT_MAX_CHUNK_MS = 2000
# The encodings are the Avro enum's (schemas.records.Encoding, the one list); bytes per sample of each (one channel).
ENCODINGS = tuple(encoding.value for encoding in Encoding)
SAMPLE_BYTES = {encoding.value: encoding.bytes_per_sample for encoding in Encoding}

# Filter design: the passband ends at 92% of the lower rate's Nyquist frequency (telephone
# audio stops at 3.4 kHz of 4, wideband speech has little above 7.4 kHz of 8), 16 zero
# crossings each side of the sinc and a Kaiser beta of 8.6 give ~80 dB of stop band.
_CUTOFF = 0.92
_ZERO_CROSSINGS = 16
_KAISER_BETA = 8.6


# --- G.711 ---------------------------------------------------------------------------------

def _mulaw_table() -> np.ndarray:
    """The 256 mu-law codes expanded to 16-bit linear values (ITU-T G.711, as audioop.ulaw2lin)."""
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = (((code & 0x0F) << 3) + 0x84) << exponent
    return np.where(code & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.float32) / 32768.0


def _alaw_table() -> np.ndarray:
    """The 256 A-law codes expanded to 16-bit linear values (ITU-T G.711, as audioop.alaw2lin)."""
    code = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (code & 0x70) >> 4
    magnitude = ((code & 0x0F) << 4) + np.where(segment == 0, 8, 0x108)
    magnitude = np.where(segment > 1, magnitude << np.maximum(segment - 1, 0), magnitude)
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.float32) / 32768.0


MULAW_TABLE = _mulaw_table()
ALAW_TABLE = _alaw_table()


# --- validation and decoding at the source rate ------------------------------------------------

def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_format(encoding: str, sample_rate: int, channels: int) -> str:
    """Raise BadChunk unless the encoding, sample rate and channel count are supported.

    Returns the encoding's name (a str Enum such as schemas.records.Encoding is accepted).
    """
    encoding = getattr(encoding, "value", encoding)
    if not isinstance(encoding, str) or encoding not in SAMPLE_BYTES:
        raise BadChunk("unknown_encoding", f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
    if not _is_int(channels) or not 1 <= channels <= MAX_CHANNELS:
        raise BadChunk("bad_channels", f"channels={channels!r}: expected 1 to {MAX_CHANNELS}")
    if not _is_int(sample_rate) or sample_rate not in SUPPORTED_RATES:
        raise BadChunk("bad_sample_rate", f"sample rate {sample_rate!r} Hz is not supported: expected one of "
                                          f"{', '.join(map(str, SUPPORTED_RATES))}")
    return encoding


def check_payload(payload: bytes, encoding: str, sample_rate: int, channels: int,
                  max_chunk_ms: float = DEFAULT_MAX_CHUNK_MS, end_of_stream: bool = False) -> str:
    """Raise BadChunk unless the chunk can be decoded (format, whole frames, size); decodes nothing.
    Returns the encoding's name."""
    encoding = check_format(encoding, sample_rate, channels)
    if not payload:
        if end_of_stream:  # the closing record of a stream may carry no audio
            return encoding
        raise BadChunk("empty_payload", "the chunk has no audio and is not the end of its stream")
    frame_bytes = SAMPLE_BYTES[encoding] * int(channels)
    if len(payload) % frame_bytes:
        raise BadChunk("partial_sample", f"{len(payload)} bytes is not a whole number of {frame_bytes}-byte "
                                         f"frames ({encoding}, {channels} channel(s))")
    duration_ms = len(payload) // frame_bytes * 1000.0 / int(sample_rate)
    if duration_ms > max_chunk_ms:
        raise BadChunk("oversized_chunk", f"the chunk holds {duration_ms:.0f} ms of audio, more than the "
                                          f"{max_chunk_ms:g} ms allowed")
    return encoding


def to_mono(payload: bytes, encoding: str, sample_rate: int, channels: int,
            max_chunk_ms: float = DEFAULT_MAX_CHUNK_MS, end_of_stream: bool = False) -> np.ndarray:
    """Check a chunk and decode it to mono float32 in [-1, 1) at its own sample rate."""
    encoding = check_payload(payload, encoding, sample_rate, channels, max_chunk_ms, end_of_stream)
    if not payload:
        return np.zeros(0, dtype=np.float32)
    channels = int(channels)
    if encoding == "PCM_S16LE":
        samples = np.frombuffer(payload, dtype="<i2").astype(np.float32) / np.float32(32768.0)
    else:
        table = MULAW_TABLE if encoding == "MULAW" else ALAW_TABLE
        samples = table[np.frombuffer(payload, dtype=np.uint8)]
    if channels > 1:  # interleaved frames: one row per frame
        samples = samples.reshape(len(samples) // channels, channels).mean(axis=1, dtype=np.float32)
    return samples


def chunk_duration_ms(payload_bytes: int, encoding: str, sample_rate: int, channels: int) -> float:
    """How much audio a payload of this size holds (for sequencing's gap fill); checks the format only."""
    encoding = check_format(encoding, sample_rate, channels)
    return payload_bytes // (SAMPLE_BYTES[encoding] * channels) * 1000.0 / sample_rate


# --- streaming resampling ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Polyphase:
    up: int
    down: int
    taps: np.ndarray  # (up, width): taps[p, j] weighs input (base - j) for an output at phase p
    width: int  # input samples one output reads; the state keeps width - 1 of them


@functools.lru_cache(maxsize=None)
def _polyphase(sample_rate: int) -> _Polyphase:
    """The resampling filter from `sample_rate` to 16 kHz, designed once per rate."""
    g = math.gcd(sample_rate, SAMPLE_RATE)
    up, down = SAMPLE_RATE // g, sample_rate // g
    factor = max(up, down)
    length = 2 * _ZERO_CROSSINGS * factor + 1
    n = np.arange(length) - (length - 1) / 2
    # Low-pass in the up-sampled domain, cut at the lower of the two Nyquist frequencies.
    prototype = np.sinc(_CUTOFF * n / factor) * np.kaiser(length, _KAISER_BETA)
    width = -(-length // up)
    padded = np.zeros(up * width)
    padded[:length] = prototype
    taps = padded.reshape(width, up).T.copy()
    # Each phase sums to exactly 1: a constant input gives a constant output, with no ripple.
    taps /= taps.sum(axis=1, keepdims=True)
    return _Polyphase(up, down, taps, width)


def group_delay_ms(sample_rate: int) -> float:
    """How much later than the input the resampled audio arrives (0 at 16 kHz)."""
    if sample_rate == SAMPLE_RATE:
        return 0.0
    filt = _polyphase(sample_rate)
    length = 2 * _ZERO_CROSSINGS * max(filt.up, filt.down) + 1
    return (length - 1) / 2 / (sample_rate * filt.up) * 1000.0


_STATE_HEADER = struct.Struct("<BIIH")  # version, sample rate, phase, history length
_STATE_VERSION = 1


@dataclass(frozen=True, eq=False)  # numpy fields: == would be ambiguous, so equality is identity
class ResampleState:
    """Where a stream's resampler stands: its rate, the last input samples and the next output's phase.

    `phase` is the next output's position past the last history sample, in up-sampled
    steps (0 <= phase < down). A fresh state has zero history, i.e. the stream starts
    after silence.
    """

    sample_rate: int
    history: np.ndarray  # float32, width - 1 samples at sample_rate
    phase: int = 0

    @classmethod
    def fresh(cls, sample_rate: int) -> "ResampleState":
        width = _polyphase(sample_rate).width if sample_rate != SAMPLE_RATE else 1
        return cls(sample_rate, np.zeros(width - 1, dtype=np.float32), 0)

    def to_bytes(self) -> bytes:
        history = np.ascontiguousarray(self.history, dtype="<f4")
        return _STATE_HEADER.pack(_STATE_VERSION, self.sample_rate, self.phase, len(history)) + history.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ResampleState":
        version, sample_rate, phase, count = _STATE_HEADER.unpack_from(data)
        if version != _STATE_VERSION or len(data) != _STATE_HEADER.size + 4 * count:
            raise ValueError(f"not a version-{_STATE_VERSION} resampler state ({len(data)} bytes)")
        history = np.frombuffer(data, dtype="<f4", offset=_STATE_HEADER.size).astype(np.float32)
        return cls(sample_rate, history, phase)


def resample(samples: np.ndarray, state: ResampleState) -> tuple[np.ndarray, ResampleState]:
    """Resample the next piece of a stream to 16 kHz; returns the output and the new state.

    Output for n inputs so far totals ceil(n * SAMPLE_RATE / rate) samples whatever the chunking.
    """
    if state.sample_rate == SAMPLE_RATE:
        return np.asarray(samples, dtype=np.float32), state
    filt = _polyphase(state.sample_rate)
    keep = filt.width - 1
    buffer = np.concatenate([state.history.astype(np.float64), np.asarray(samples, dtype=np.float64)])
    # Output m sits at up-sampled position t_m = start + m * down; it reads inputs base_m - j, j < width.
    start = keep * filt.up + state.phase
    available = len(buffer) * filt.up - start
    count = max(0, -(-available // filt.down))
    positions = start + filt.down * np.arange(count)
    base, phase = np.divmod(positions, filt.up)
    window = buffer[base[:, None] - np.arange(filt.width)[None, :]]
    out = np.einsum("mj,mj->m", window, filt.taps[phase]).astype(np.float32)
    # Keep the last width - 1 inputs; the next output's position relative to them is its phase.
    next_position = start + filt.down * count
    dropped = len(buffer) - keep
    new_state = ResampleState(state.sample_rate, buffer[dropped:].astype(np.float32),
                              int(next_position - (dropped + keep) * filt.up))
    return out, new_state


# --- entry points ------------------------------------------------------------------------------

def decode_stream_chunk(payload: bytes, encoding: str, sample_rate: int, channels: int,
                        state: ResampleState | None, max_chunk_ms: float = DEFAULT_MAX_CHUNK_MS,
                        end_of_stream: bool = False) -> tuple[np.ndarray, ResampleState]:
    """The next chunk of a live stream as 16 kHz mono float32, and the stream's new resampler state.

    `state` is None for a stream's first chunk. A stream whose sample rate changes starts a
    fresh resampler (a producer restart: there is no continuity to keep).
    """
    mono = to_mono(payload, encoding, sample_rate, channels, max_chunk_ms, end_of_stream)
    sample_rate = int(sample_rate)
    if state is None or state.sample_rate != sample_rate:
        state = ResampleState.fresh(sample_rate)
    return resample(mono, state)


def decode_chunk(payload: bytes, encoding: str, sample_rate: int, channels: int,
                 max_chunk_ms: float = DEFAULT_MAX_CHUNK_MS, end_of_stream: bool = False) -> np.ndarray:
    """One chunk on its own as 16 kHz mono float32 (a fresh resampler; see the module docstring)."""
    samples, _ = decode_stream_chunk(payload, encoding, sample_rate, channels, None, max_chunk_ms, end_of_stream)
    return samples
