"""The utterance state machine: synthetic probability sequences, then real speech end to end."""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from callstt.models.audio.decoding import SAMPLE_RATE, decode_stream_chunk
from callstt.models.audio.endpointing import Cut, EndpointConfig, Endpointer, EndpointState
from callstt.models.audio.vad import VadState, shared_vad
from callstt.models.voices.synth import synthesize_wav

W = 512  # samples per VAD window
# The cases below place speech 10 windows (320 ms) in: a 200 ms pad keeps the arithmetic visible
# (the default is 400 ms).
CONFIG = EndpointConfig(pad_ms=200)
PAD = CONFIG.pad_ms * 16


def feed_one_by_one(endpointer: Endpointer, probabilities, state: EndpointState | None = None):
    """Feed windows one at a time; returns [(window index, cut)] and the final state."""
    state = state or EndpointState()
    found = []
    for probability in probabilities:
        cuts, state = endpointer.feed(state, [probability])
        found += [(state.windows - 1, cut) for cut in cuts]
    return found, state


def seq(*runs: tuple[float, int]) -> list[float]:
    return [value for value, count in runs for _ in range(count)]


# --- synthetic probabilities -----------------------------------------------------------------------

def test_silence_ends_an_utterance_padded_on_both_sides():
    endpointer = Endpointer(CONFIG)
    found, state = feed_one_by_one(endpointer, seq((0.0, 10), (0.9, 30), (0.1, 30)))
    assert found == [(39 + 19, Cut(10 * W - PAD, 40 * W + PAD, "silence", 30 * 32, 40 * W))]  # 19 windows = 608 ms
    assert not state.is_open and state.sent == 1 and state.dropped == 0


def test_utterance_at_the_stream_start_is_not_padded_before_zero():
    found, _ = feed_one_by_one(Endpointer(CONFIG), seq((0.9, 20), (0.0, 20)))
    assert found[0][1].start_sample == 0


def test_pauses_shorter_than_min_silence_do_not_cut():
    found, _ = feed_one_by_one(Endpointer(CONFIG), seq((0.9, 20), (0.2, 18), (0.9, 20), (0.0, 19)))
    assert [cut for _, cut in found] == [Cut(0, 58 * W + PAD, "silence", 40 * 32, 58 * W)]


def test_short_blips_are_dropped():
    endpointer = Endpointer(CONFIG)
    found, state = feed_one_by_one(endpointer, seq((0.0, 5), (0.95, 5), (0.0, 40)))
    assert found == [] and state.dropped == 1 and state.sent == 0
    assert endpointer.keep_from_sample(state) == 50 * W - PAD  # the blip's audio may go


@pytest.mark.parametrize("voiced, kept", [(7, False), (8, True)])  # 224 ms < 250 ms <= 256 ms
def test_min_speech_counts_voiced_windows(voiced, kept):
    # Voiced windows spread over an utterance with unvoiced windows between them still add up.
    probabilities = seq((0.0, 3)) + seq(*[(0.9, 1), (0.3, 3)] * voiced) + seq((0.0, 25))
    found, state = feed_one_by_one(Endpointer(CONFIG), probabilities)
    assert (len(found) == 1) is kept and state.dropped == (not kept)


def test_max_length_cuts_at_the_quietest_window_of_the_last_third():
    endpointer = Endpointer(CONFIG)  # 15 s = 468.75 windows; the last third starts at window 313
    probabilities = [0.9] * 500 + [0.0] * 30
    probabilities[100] = 0.1  # quieter, but in the first two thirds: not a candidate
    probabilities[400] = 0.3
    probabilities[420] = 0.35
    found, state = feed_one_by_one(endpointer, probabilities)
    first_end = 400 * W + W // 2  # the middle of the quietest window
    assert found[0] == (468, Cut(0, first_end, "max_length", (401 - 2) * 32, first_end))
    # The rest carries over as the next utterance, starting exactly where the first ended.
    assert found[1] == (499 + 19, Cut(first_end, 500 * W + PAD, "silence", (500 - 401 - 1) * 32, 500 * W))
    assert len(found) == 2 and state.sent == 2


def test_max_length_cut_in_a_pause_closes_the_utterance():
    endpointer = Endpointer(CONFIG)
    probabilities = seq((0.9, 456), (0.0, 18), (0.9, 30), (0.0, 20))
    found, state = feed_one_by_one(endpointer, probabilities)
    quiet_end = 456 * W + W // 2  # first window of the pause: ties keep the earliest
    assert found[0] == (468, Cut(0, quiet_end, "max_length", 456 * 32, 456 * W))
    second = found[1][1]
    assert second.start_sample == 474 * W - PAD and second.reason == "silence"


def test_cut_pieces_never_exceed_max_length():
    config = EndpointConfig(max_utterance_ms=3000, pad_ms=200)
    rng = np.random.default_rng(3)
    probabilities = np.clip(0.85 + 0.1 * rng.standard_normal(2000), 0, 1)
    found, state = feed_one_by_one(Endpointer(config), probabilities)
    cuts, _ = Endpointer(config).flush(state, audio_end=2000 * W)
    cuts = [cut for _, cut in found] + cuts
    assert len(cuts) > 20 and all(cut.end_sample - cut.start_sample <= 3000 * 16 for cut in cuts)
    assert all(a.end_sample == b.start_sample for a, b in zip(cuts, cuts[1:]))  # contiguous speech, no loss
    assert cuts[0].start_sample == 0 and cuts[-1].end_sample == 2000 * W


def test_padding_never_reaches_back_into_the_previous_cut():
    endpointer = Endpointer(EndpointConfig(min_silence_ms=100, pad_ms=200))
    found, _ = feed_one_by_one(endpointer, seq((0.9, 20), (0.0, 4), (0.9, 20), (0.0, 4)))
    first, second = found[0][1], found[1][1]
    assert first.end_sample == 24 * W  # the trailing pad is clipped at the current position
    assert second.start_sample == first.end_sample


def test_flush_at_end_of_stream_closes_the_open_utterance():
    endpointer = Endpointer(CONFIG)
    _, state = feed_one_by_one(endpointer, seq((0.0, 10), (0.9, 40)))
    cuts, closed = endpointer.flush(state, "end_of_stream", audio_end=50 * W + 100)
    assert cuts == [Cut(10 * W - PAD, 50 * W + 100, "end_of_stream", 40 * 32, 50 * W)]  # includes the unscored tail
    assert not closed.is_open
    assert endpointer.flush(closed, "end_of_stream") == ([], closed)


def test_idle_flush_and_a_later_utterance():
    endpointer = Endpointer(CONFIG)
    _, state = feed_one_by_one(endpointer, seq((0.9, 20), (0.0, 3)))
    cuts, state = endpointer.flush(state, "idle")
    assert cuts == [Cut(0, 23 * W, "idle", 20 * 32, 20 * W)]
    found, _ = feed_one_by_one(endpointer, seq((0.9, 20), (0.0, 20)), state)
    assert found[0][1].start_sample == 23 * W  # not before the idle cut's end
    with pytest.raises(ValueError):
        endpointer.flush(state, "silence")


def test_flush_drops_a_short_utterance():
    endpointer = Endpointer(CONFIG)
    _, state = feed_one_by_one(endpointer, seq((0.9, 3)))
    cuts, state = endpointer.flush(state, "end_of_stream")
    assert cuts == [] and state.dropped == 1


SPECULATE = EndpointConfig(pad_ms=200, speculate_ms=256)  # 8 windows of silence


def test_a_speculative_cut_foresees_the_final_one_when_no_speech_comes_back():
    endpointer = Endpointer(SPECULATE)
    found, state = feed_one_by_one(endpointer, seq((0.0, 10), (0.9, 30), (0.1, 30)))
    (at_speculation, speculative), (at_end, final) = found
    assert speculative.speculative and not final.speculative
    assert at_speculation == 39 + 8 and at_end == 39 + 19  # 256 ms, then the full 608 ms
    # The 200 ms pad fits in the 256 ms of silence seen: the same audio as the final cut.
    assert (speculative.start_sample, speculative.end_sample) == (final.start_sample, final.end_sample)
    assert speculative.same_speech(final) and final.end_sample == 40 * W + PAD
    # With a longer pad, the speculative audio stops where the endpointer is: only silence is missing.
    found, _ = feed_one_by_one(Endpointer(replace(SPECULATE, pad_ms=400)), seq((0.0, 20), (0.9, 30), (0.1, 30)))
    assert found[0][1].end_sample == 58 * W < found[1][1].end_sample == 50 * W + 6400
    assert state.sent == 1  # a speculation is not an utterance


def test_speech_coming_back_makes_a_new_speculation_that_differs():
    found, _ = feed_one_by_one(Endpointer(SPECULATE), seq((0.9, 20), (0.0, 10), (0.9, 20), (0.0, 19)))
    cuts = [cut for _, cut in found]
    assert [cut.speculative for cut in cuts] == [True, True, False]
    assert not cuts[0].same_speech(cuts[2]) and cuts[1].same_speech(cuts[2])


def test_no_speculation_for_blips_or_when_turned_off():
    found, _ = feed_one_by_one(Endpointer(SPECULATE), seq((0.9, 3), (0.0, 30)))
    assert found == []
    found, _ = feed_one_by_one(Endpointer(CONFIG), seq((0.9, 20), (0.0, 30)))
    assert [cut.speculative for _, cut in found] == [False]


def test_keep_from_sample():
    endpointer = Endpointer(CONFIG)
    state = EndpointState()
    assert endpointer.keep_from_sample(state) == 0
    _, state = endpointer.feed(state, [0.0] * 100)
    assert endpointer.keep_from_sample(state) == 100 * W - PAD  # pad_ms before the position
    _, state = endpointer.feed(state, [0.9] * 5)
    assert endpointer.keep_from_sample(state) == 100 * W - PAD == state.start  # the open utterance's start


def test_any_batching_of_windows_gives_the_same_cuts_and_state():
    rng = np.random.default_rng(11)
    # Speech-like: runs of voiced and unvoiced windows of random lengths.
    probabilities = np.concatenate([np.full(rng.integers(1, 60), rng.choice([0.05, 0.6, 0.95]))
                                    for _ in range(300)])
    endpointer = Endpointer(EndpointConfig(max_utterance_ms=4000, pad_ms=200))
    expected, expected_state = endpointer.feed(EndpointState(), probabilities)
    state, cuts, offset = EndpointState(), [], 0
    while offset < len(probabilities):
        size = int(rng.integers(0, 70))
        more, state = endpointer.feed(EndpointState.from_bytes(state.to_bytes()), probabilities[offset:offset + size])
        cuts += more
        offset += size
    assert cuts == expected and state == expected_state
    assert {cut.reason for cut in cuts} == {"silence", "max_length"}


def test_state_round_trips_through_bytes():
    state = EndpointState(windows=12345, floor=99, start=1000, voiced=7, last_voiced=12340, silence_run=4,
                          quiet_window=12000, quiet_probability=0.125, voiced_after_quiet=3, sent=5, dropped=2)
    data = state.to_bytes()
    assert EndpointState.from_bytes(data) == state and len(data) < 128
    with pytest.raises(ValueError):
        EndpointState.from_bytes(data[:-1])


# --- real speech: decode -> VAD -> endpointer, the way the pipeline will call them ------------------

SENTENCES = ["The quick brown fox jumps over the lazy dog.",
             "Please call me back tomorrow morning about the invoice.",
             "We will ship your order on Friday."]


def speech_at(rate: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The sentences with 1 s of silence around each, at `rate`; and each sentence's voiced range in 16 kHz samples."""
    from faster_whisper.audio import decode_audio

    gap = np.zeros(rate, dtype=np.float32)
    parts, ranges, length = [gap], [], rate
    with tempfile.TemporaryDirectory() as folder:
        for index, text in enumerate(SENTENCES):
            wav = synthesize_wav(text, Path(folder) / f"{index}.wav")
            sentence = decode_audio(str(wav), sampling_rate=rate)  # PyAV's resampler: independent of ours
            voiced = np.flatnonzero(np.abs(sentence) > 0.01)
            ranges.append(((length + voiced[0]) * SAMPLE_RATE // rate, (length + voiced[-1] + 1) * SAMPLE_RATE // rate))
            parts += [sentence, gap]
            length += len(sentence) + rate
    return np.concatenate(parts), ranges


def run_pipeline(payload: bytes, encoding: str, rate: int, chunk_bytes: int):
    """A caller as the stream processor will be: it buffers audio only from keep_from_sample on."""
    vad, endpointer = shared_vad(), Endpointer(CONFIG)
    resampler, vad_state, state = None, VadState(), EndpointState()
    buffer, buffer_start, decoded, longest_buffer = np.zeros(0, dtype=np.float32), 0, 0, 0
    utterances: list[tuple[Cut, np.ndarray]] = []

    def take(cuts):
        for cut in cuts:
            assert cut.start_sample >= buffer_start, "the endpointer asked for audio it had let go"
            utterances.append((cut, buffer[cut.start_sample - buffer_start:cut.end_sample - buffer_start]))

    for offset in range(0, len(payload), chunk_bytes):
        samples, resampler = decode_stream_chunk(payload[offset:offset + chunk_bytes], encoding, rate, 1, resampler)
        buffer = np.concatenate([buffer, samples])
        decoded += len(samples)
        probabilities, vad_state = vad.process(samples, vad_state)
        cuts, state = endpointer.feed(state, probabilities)
        take(cuts)
        keep = endpointer.keep_from_sample(state)
        buffer, buffer_start = buffer[keep - buffer_start:], keep
        longest_buffer = max(longest_buffer, len(buffer))
    cuts, state = endpointer.flush(state, "end_of_stream", audio_end=decoded)
    take(cuts)
    return utterances, longest_buffer


def check_cuts(utterances, ranges, longest_buffer):
    assert [cut.reason for cut, _ in utterances] == ["silence"] * 3
    for index, ((cut, audio), (first, last)) in enumerate(zip(utterances, ranges)):
        assert cut.start_sample <= first and cut.end_sample >= last, f"sentence {index} is not inside {cut}"
        if index + 1 < len(ranges):
            assert cut.end_sample < ranges[index + 1][0]
        assert len(audio) == cut.end_sample - cut.start_sample
        assert cut.speech_ms >= 1000
    # The caller held about one utterance of audio, never the whole call.
    assert longest_buffer <= max(cut.end_sample - cut.start_sample for cut, _ in utterances) + SAMPLE_RATE


def test_three_sentences_at_16k_pcm_in_20ms_chunks():
    audio, ranges = speech_at(16000)
    payload = np.round(np.clip(audio, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()
    utterances, longest_buffer = run_pipeline(payload, "PCM_S16LE", 16000, chunk_bytes=640)
    assert len(utterances) == 3
    check_cuts(utterances, ranges, longest_buffer)
    exact = np.frombuffer(payload, dtype="<i2") / np.float32(32768)
    for cut, samples in utterances:  # the caller's sliced buffer is exactly the stream's audio
        np.testing.assert_array_equal(samples, exact[cut.start_sample:cut.end_sample])


def test_three_sentences_at_8k_mulaw_in_20ms_chunks():
    with warnings.catch_warnings():  # an independent mu-law encoder for the test only
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop
    audio, ranges = speech_at(8000)
    pcm = np.round(np.clip(audio, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()
    utterances, longest_buffer = run_pipeline(audioop.lin2ulaw(pcm, 2), "MULAW", 8000, chunk_bytes=160)
    assert len(utterances) == 3
    check_cuts(utterances, ranges, longest_buffer)
