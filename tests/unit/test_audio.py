"""Decoding audio chunks: G.711 tables, PCM, downmix, streaming resampling and the BadChunk checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from callstt.models.audio.decoding import (ALAW_TABLE, MULAW_TABLE, SAMPLE_RATE, SUPPORTED_RATES, ResampleState,
                                           chunk_duration_ms, decode_chunk, decode_stream_chunk, group_delay_ms,
                                           resample, to_mono)
from callstt.models.audio.errors import BadChunk

with warnings.catch_warnings():  # deprecated (gone in 3.13), used here only as an independent reference
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


def sine(rate: int, frequency: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def pcm16(samples: np.ndarray) -> bytes:
    return np.round(np.clip(samples, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()


def peak_hz(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def stream_in_chunks(samples_pcm: bytes, rate: int, chunk_ms: int = 20, encoding: str = "PCM_S16LE",
                     channels: int = 1) -> np.ndarray:
    step = rate * chunk_ms // 1000 * channels * (2 if encoding == "PCM_S16LE" else 1)
    state, pieces = None, []
    for offset in range(0, len(samples_pcm), step):
        piece, state = decode_stream_chunk(samples_pcm[offset:offset + step], encoding, rate, channels, state)
        pieces.append(piece)
    return np.concatenate(pieces)


# --- G.711 and PCM ---------------------------------------------------------------------------------

def test_mulaw_table_matches_audioop():
    reference = np.frombuffer(audioop.ulaw2lin(bytes(range(256)), 2), dtype="<i2") / 32768.0
    np.testing.assert_array_equal(MULAW_TABLE, reference.astype(np.float32))


def test_alaw_table_matches_audioop():
    reference = np.frombuffer(audioop.alaw2lin(bytes(range(256)), 2), dtype="<i2") / 32768.0
    np.testing.assert_array_equal(ALAW_TABLE, reference.astype(np.float32))


@pytest.mark.parametrize("encoding, encode", [("MULAW", audioop.lin2ulaw), ("ALAW", audioop.lin2alaw)])
def test_g711_chunk_decodes_like_audioop(encoding, encode):
    payload = encode(pcm16(sine(8000, 440, 0.1)), 2)
    expected = np.frombuffer(audioop.ulaw2lin(payload, 2) if encoding == "MULAW" else audioop.alaw2lin(payload, 2),
                             dtype="<i2") / 32768.0
    np.testing.assert_array_equal(to_mono(payload, encoding, 8000, 1), expected.astype(np.float32))


def test_g711_known_codes():
    # mu-law 0xFF and A-law 0xD5 are the codes of zero; 0x00 / 0x2A the most negative values.
    assert MULAW_TABLE[0xFF] == 0 and MULAW_TABLE[0x7F] == 0
    assert MULAW_TABLE[0x00] == -32124 / 32768 and MULAW_TABLE[0x80] == 32124 / 32768
    assert ALAW_TABLE[0xD5] == 8 / 32768 and ALAW_TABLE[0x55] == -8 / 32768
    assert ALAW_TABLE[0x2A] == -32256 / 32768 and ALAW_TABLE[0xAA] == 32256 / 32768


def test_pcm_s16le_values():
    payload = np.array([0, 16384, -32768, 32767, -1], dtype="<i2").tobytes()
    np.testing.assert_array_equal(decode_chunk(payload, "PCM_S16LE", 16000, 1),
                                  np.array([0, 0.5, -1, 32767 / 32768, -1 / 32768], dtype=np.float32))


def test_downmix_is_the_mean_of_the_channels():
    left = np.array([1000, 2000, -3000], dtype="<i2")
    right = np.array([3000, -2000, -1000], dtype="<i2")
    payload = np.stack([left, right], axis=1).tobytes()  # interleaved L R L R ...
    np.testing.assert_allclose(decode_chunk(payload, "PCM_S16LE", 16000, 2),
                               np.array([2000, 0, -2000]) / 32768, atol=1e-7)


def test_str_enum_encodings_are_accepted():
    from enum import Enum

    class Encoding(str, Enum):
        MULAW = "MULAW"

    assert len(decode_chunk(b"\xff" * 160, Encoding.MULAW, 8000, 1)) == 320


# --- resampling ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [8000, 44100, 48000])
@pytest.mark.parametrize("frequency", [300, 1000, 3000])
def test_resampled_sine_keeps_its_frequency_and_level(rate, frequency):
    out = stream_in_chunks(pcm16(sine(rate, frequency, 1.0)), rate)
    assert len(out) == SAMPLE_RATE
    assert abs(peak_hz(out) - frequency) <= 1
    assert np.sqrt(2) * out[1000:-1000].std() == pytest.approx(0.5, abs=0.005)


@pytest.mark.parametrize("rate", SUPPORTED_RATES)
def test_chunked_resampling_equals_one_piece(rate):
    """No clicks at chunk borders: any chunking gives exactly the samples of one piece."""
    x = sine(rate, 440, 0.5) + sine(rate, 2500, 0.5, 0.2)
    whole, _ = resample(x, ResampleState.fresh(rate))
    rng = np.random.default_rng(rate)
    state, pieces, offset = ResampleState.fresh(rate), [], 0
    while offset < len(x):
        size = int(rng.integers(0, 900))
        piece, state = resample(x[offset:offset + size], state)
        pieces.append(piece)
        offset += size
    chunked = np.concatenate(pieces)
    np.testing.assert_array_equal(chunked, whole)
    assert len(whole) == -(-len(x) * SAMPLE_RATE // rate)


def test_resampler_state_round_trips_through_bytes():
    x = sine(48000, 700, 0.2)
    _, state = resample(x[:1234], ResampleState.fresh(48000))
    restored = ResampleState.from_bytes(state.to_bytes())
    assert restored.sample_rate == 48000 and restored.phase == state.phase
    np.testing.assert_array_equal(resample(x[1234:], restored)[0], resample(x[1234:], state)[0])
    assert len(state.to_bytes()) < 512
    with pytest.raises(ValueError):
        ResampleState.from_bytes(state.to_bytes()[:-4])


def test_48k_content_above_8k_is_filtered_not_aliased():
    out, _ = resample(sine(48000, 12000, 1.0), ResampleState.fresh(48000))  # would alias to 4 kHz
    assert np.abs(out[100:]).max() < 1e-3  # after the switch-on transient, whose spectrum is broad


def test_8k_upsampling_leaves_no_image():
    out = stream_in_chunks(pcm16(sine(8000, 1000, 1.0)), 8000)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    image = spectrum[7000 - 50:7000 + 50].max()  # 1 kHz mirrored around 4 kHz
    assert image < 1e-3 * spectrum.max()


def test_16k_passes_through_untouched():
    payload = pcm16(sine(16000, 440, 0.02))
    assert np.array_equal(decode_chunk(payload, "PCM_S16LE", 16000, 1), to_mono(payload, "PCM_S16LE", 16000, 1))


def test_group_delay_is_small():
    assert group_delay_ms(16000) == 0
    assert all(group_delay_ms(rate) <= 2.0 for rate in SUPPORTED_RATES)


def test_a_new_sample_rate_restarts_the_resampler():
    _, state = decode_stream_chunk(b"\x00\x00" * 160, "PCM_S16LE", 8000, 1, None)
    out, state = decode_stream_chunk(b"\x00\x00" * 960, "PCM_S16LE", 48000, 1, state)
    assert state.sample_rate == 48000 and len(out) == 320


def test_chunk_duration():
    assert chunk_duration_ms(160, "MULAW", 8000, 1) == 20
    assert chunk_duration_ms(3840, "PCM_S16LE", 48000, 2) == 20


# --- validation --------------------------------------------------------------------------------------

@pytest.mark.parametrize("payload, encoding, rate, channels, kwargs, reason", [
    (b"\x00" * 320, "OPUS", 16000, 1, {}, "unknown_encoding"),
    (b"\x00" * 320, "pcm_s16le", 16000, 1, {}, "unknown_encoding"),
    (b"\x00" * 320, "PCM_S16LE", 7000, 1, {}, "bad_sample_rate"),
    (b"\x00" * 320, "PCM_S16LE", 96000, 1, {}, "bad_sample_rate"),
    (b"\x00" * 320, "PCM_S16LE", 8001, 1, {}, "bad_sample_rate"),
    (b"\x00" * 320, "PCM_S16LE", 16000.0, 1, {}, "bad_sample_rate"),
    (b"\x00" * 321, "PCM_S16LE", 16000, 1, {}, "partial_sample"),
    (b"\x00" * 322, "PCM_S16LE", 16000, 2, {}, "partial_sample"),
    (b"\x00" * 161, "MULAW", 8000, 2, {}, "partial_sample"),
    (b"\x00" * 16002, "MULAW", 8000, 1, {}, "oversized_chunk"),
    (b"\x00" * 3202, "PCM_S16LE", 16000, 1, {"max_chunk_ms": 100}, "oversized_chunk"),
    (b"\x00" * 320, "PCM_S16LE", 16000, 0, {}, "bad_channels"),
    (b"\x00" * 320, "PCM_S16LE", 16000, 9, {}, "bad_channels"),
    (b"", "PCM_S16LE", 16000, 1, {}, "empty_payload"),
])
def test_bad_chunks_raise_with_their_reason(payload, encoding, rate, channels, kwargs, reason):
    with pytest.raises(BadChunk) as caught:
        decode_chunk(payload, encoding, rate, channels, **kwargs)
    assert caught.value.reason == reason
    assert reason in BadChunk.REASONS
    assert isinstance(caught.value, ValueError)


def test_limits_are_inclusive():
    assert len(decode_chunk(b"\x00" * 16000, "MULAW", 8000, 1)) == 32000  # exactly 2000 ms
    assert len(decode_chunk(b"\x00" * 16 * 8, "MULAW", 8000, 8)) == 32


def test_empty_payload_is_allowed_at_end_of_stream():
    out = decode_chunk(b"", "MULAW", 8000, 1, end_of_stream=True)
    assert out.dtype == np.float32 and len(out) == 0


def test_every_encoding_of_the_schema_has_a_sample_size():
    """schemas.records.Encoding (the Avro enum) is the one list of encodings; models.audio.decoding follows it."""
    from callstt.models.audio.decoding import ENCODINGS, SAMPLE_BYTES
    from callstt.schemas.codec import load_schema_file
    from callstt.schemas.records import Encoding

    assert ENCODINGS == tuple(encoding.value for encoding in Encoding)
    assert set(SAMPLE_BYTES) == set(ENCODINGS)
    for encoding in Encoding:
        assert SAMPLE_BYTES[encoding.value] == encoding.bytes_per_sample
        assert len(decode_chunk(b"\x00" * 4 * SAMPLE_BYTES[encoding.value], encoding, 16000, 1)) == 4
    [field] = [f for f in load_schema_file("audio_chunk.avsc")["fields"] if f["name"] == "encoding"]
    assert tuple(field["type"]["symbols"]) == ENCODINGS
