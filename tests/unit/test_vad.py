"""Streaming Silero VAD: speech scores high, silence and faint noise low, chunking changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.audio.vad import WINDOW_SAMPLES, StreamingVad, VadState, shared_vad
from callstt.models.voices.synth import synthesize

SILENCE_S = 1.0


@pytest.fixture(scope="module")
def vad() -> StreamingVad:
    return shared_vad()


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int, int]:
    """One second of silence, a sentence, one second of silence; and the sentence's sample range."""
    sentence = synthesize("Please call me back tomorrow morning about the invoice.")
    voiced = np.flatnonzero(np.abs(sentence) > 0.01)
    pad = np.zeros(int(SAMPLE_RATE * SILENCE_S), dtype=np.float32)
    audio = np.concatenate([pad, sentence, pad])
    return audio, len(pad) + voiced[0], len(pad) + voiced[-1]


def test_speech_scores_high_and_the_silence_around_it_low(vad, speech):
    audio, first, last = speech
    probabilities, _ = vad.process(audio)
    assert len(probabilities) == len(audio) // WINDOW_SAMPLES
    window_of = lambda sample: sample // WINDOW_SAMPLES  # noqa: E731
    inside = probabilities[window_of(first) + 3:window_of(last) - 3]
    before = probabilities[:window_of(first) - 2]
    after = probabilities[window_of(last) + 8:]  # Silero's LSTM decays over a few windows
    assert np.mean(inside > 0.5) > 0.9 and np.median(inside) > 0.9
    assert before.max() < 0.2 and after.max() < 0.2


def test_digital_silence_and_faint_noise_score_low(vad):
    probabilities, _ = vad.process(np.zeros(SAMPLE_RATE * 2, dtype=np.float32))
    assert probabilities.max() < 0.1
    noise = (0.003 * np.random.default_rng(7).standard_normal(SAMPLE_RATE * 2)).astype(np.float32)
    probabilities, _ = vad.process(noise)
    assert probabilities.max() < 0.2


def test_20ms_pieces_give_the_probabilities_of_one_piece(vad, speech):
    audio, _, _ = speech
    whole, whole_state = vad.process(audio)
    state, pieces = VadState(), []
    for offset in range(0, len(audio), 320):  # 20 ms at 16 kHz: not a multiple of the 512-sample window
        probabilities, state = vad.process(audio[offset:offset + 320], state)
        pieces.append(probabilities)
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-6)
    assert state.windows == whole_state.windows == len(whole)
    np.testing.assert_array_equal(state.leftover, whole_state.leftover)


def test_matches_faster_whispers_own_silero_run(vad, speech):
    from faster_whisper.vad import get_vad_model

    audio, _, _ = speech
    usable = len(audio) // WINDOW_SAMPLES * WINDOW_SAMPLES
    probabilities, _ = vad.process(audio)
    np.testing.assert_allclose(probabilities, get_vad_model()(audio[:usable]), atol=1e-6)


def test_state_round_trips_through_bytes(vad, speech):
    audio, _, _ = speech
    split = 16000 + 12345  # mid-speech, mid-window
    expected, _ = vad.process(audio)
    first, state = vad.process(audio[:split])
    data = state.to_bytes()
    assert isinstance(data, bytes) and len(data) < 4096
    restored = VadState.from_bytes(data)
    assert restored.windows == state.windows and len(restored.leftover) == split % WINDOW_SAMPLES
    rest, _ = vad.process(audio[split:], restored)
    np.testing.assert_allclose(np.concatenate([first, rest]), expected, atol=1e-6)
    with pytest.raises(ValueError):
        VadState.from_bytes(data[:-4])


def test_short_pieces_only_accumulate(vad):
    probabilities, state = vad.process(np.zeros(100, dtype=np.float32))
    assert len(probabilities) == 0 and len(state.leftover) == 100 and state.windows == 0
    probabilities, state = vad.process(np.zeros(412, dtype=np.float32), state)
    assert len(probabilities) == 1 and len(state.leftover) == 0 and state.windows == 1


def test_streams_on_several_threads_share_the_session(vad, speech):
    from concurrent.futures import ThreadPoolExecutor

    audio, _, _ = speech
    streams = [audio * gain for gain in (1.0, 0.5, 0.25, 0.1)]
    expected = [vad.process(stream)[0] for stream in streams]

    def in_pieces(stream):
        state, pieces = VadState(), []
        for offset in range(0, len(stream), 640):
            probabilities, state = vad.process(stream[offset:offset + 640], state)
            pieces.append(probabilities)
        return np.concatenate(pieces)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(in_pieces, streams))
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_one_session_serves_every_instance():
    assert StreamingVad().session is shared_vad().session
