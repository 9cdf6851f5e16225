"""Batched and packed inference (models/asr/batching.py): window planning, splitting words back to
their utterances, and a real packed transcription with the packaged base model."""

from __future__ import annotations

import numpy as np
import pytest

from callstt.models.asr.batching import (InferenceRequest, Placement, assign_words, needs_own_window, plan_windows,
                                         split_lanes, suspects, transcribe_many, transcribe_packed, window_seconds)
from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.text.results import Word


def test_plan_windows_packs_in_order_and_opens_a_window_when_full() -> None:
    windows = plan_windows([3.0, 4.0, 10.0, 12.0, 2.0], window_s=20.0, gap_s=1.0)
    assert windows == [[(0, 0.0), (1, 4.0), (2, 9.0)], [(3, 0.0), (4, 13.0)]]


def test_plan_windows_gives_a_long_utterance_its_own_window() -> None:
    windows = plan_windows([2.0, 29.0, 2.0], window_s=28.0, gap_s=0.8)
    assert windows == [[(0, 0.0)], [(1, 0.0)], [(2, 0.0)]]


def test_assign_words_by_midpoint_nearest_span_and_local_times() -> None:
    placements = [Placement(0, 0.0, 2.0), Placement(1, 2.8, 5.0)]
    words = [Word("hello", 0.1, 0.5, 0.9), Word("there", 1.7, 2.3, 0.9),  # midpoint 2.0: first span
             Word("stray", 2.45, 2.6, 0.5),  # in the gap, nearer the second span
             Word("again", 3.0, 3.4, 0.9), Word("late", 4.9, 5.3, 0.9)]  # end clamped to the utterance
    assigned = assign_words(words, placements)
    assert [w.text for w in assigned[0]] == ["hello", "there"]
    assert assigned[0][1].end == 2.0  # clamped inside the first utterance
    assert [w.text for w in assigned[1]] == ["stray", "again", "late"]
    assert assigned[1][0].start == 0.0  # before the span start: clamped to 0
    assert assigned[1][1].start == pytest.approx(0.2) and assigned[1][1].end == pytest.approx(0.6)
    assert assigned[1][2].end == pytest.approx(2.2)


def test_a_packed_utterance_with_far_too_few_words_gets_its_own_window() -> None:
    """The scaling fault of issue 22: a 3.1 s utterance ("Thank you for calling customer support.")
    came back from a shared window as its neighbour's "Can"."""
    can = [Word("Can", 2.9, 3.1, 0.6)]
    assert needs_own_window(can, 3.1)
    assert needs_own_window([], 1.0)  # nothing at all, whatever its length
    assert not needs_own_window([Word("Yes.", 0.4, 0.8, 0.9)], 1.2)  # a short answer is fine
    sentence = "Thank you for calling customer support."
    assert not needs_own_window([Word(w, 0, 0, 0.9) for w in sentence.split()], 3.1)
    looped = (sentence + " ") * 4  # the neighbours' identical words run into it: the guard's "loop"
    assert needs_own_window([Word(w, 0, 0, 0.9) for w in looped.split()], 3.1)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown inference mode"):
        transcribe_many(object(), [], mode="bogus")


@pytest.fixture(scope="module")
def utterances() -> list[tuple[str, np.ndarray]]:
    from callstt.models.voices.synth import synthesize

    pad = np.zeros(int(0.3 * SAMPLE_RATE), dtype=np.float32)
    texts = ["Please call me back tomorrow morning.", "Thank you for calling customer support.",
             "I need to change my delivery address."]
    return [(text, np.concatenate([pad, synthesize(text, "en"), pad])) for text in texts]


def test_packing_splits_words_back_to_their_utterances(base_model, utterances) -> None:
    from callstt.streams.bench.evaluation.scoring import word_error_rate

    audios = [audio for _, audio in utterances]
    results = transcribe_packed(base_model, audios, "en", gap_s=0.8)
    assert len(results) == len(audios)
    for (text, audio), result in zip(utterances, results):
        duration = len(audio) / SAMPLE_RATE
        assert word_error_rate(text, result.text) <= 0.2, (text, result.text)
        assert result.words, text
        # Times are relative to the utterance itself: its speech starts after the 0.3 s pad.
        assert 0.0 <= result.words[0].start <= 0.8, (text, result.words[0])
        assert all(0.0 <= w.start <= w.end <= duration for w in result.words)
        assert [w.start for w in result.words] == sorted(w.start for w in result.words)
        assert result.model_name == "base" and result.language == "en"


def test_transcribe_many_keeps_request_order_across_modes(base_model, utterances) -> None:
    requests = [InferenceRequest(audio, "en") for _, audio in utterances[:2]]
    single = transcribe_many(base_model, requests, mode="single")
    batched = transcribe_many(base_model, requests, mode="batched")
    for one, other in zip(single, batched):
        assert one.text.split()[:2] == other.text.split()[:2]


def test_windows_are_sized_to_the_utterance_in_5_s_steps_between_the_minimum_and_30_s() -> None:
    assert window_seconds(2.3, min_window_s=10) == 10.0
    assert window_seconds(12.1, min_window_s=10) == 15.0
    assert window_seconds(29.0, min_window_s=10) == 30.0 and window_seconds(45.0, min_window_s=10) == 30.0
    assert window_seconds(2.3, min_window_s=30) == 30.0  # the default: Whisper's own window


def test_short_windows_transcribe_the_sentences_as_the_30_s_window_does(base_model, utterances) -> None:
    """The window policy's accuracy guard on the test sentences (a measurement, not a timing):
    WER over the sentences at a 10 s window within 1 point of the 30 s window, word times inside
    each utterance, and a mixed batch (a 12 s utterance gets a 15 s window) keeps request order."""
    from callstt.streams.bench.evaluation.scoring import word_error_rate

    texts = [text for text, _ in utterances]
    long_audio = np.concatenate([audio for _, audio in utterances] * 2)  # ~12 s: its own window size
    requests = [InferenceRequest(audio, "en") for _, audio in utterances] + [InferenceRequest(long_audio, "en")]
    full = transcribe_many(base_model, requests, mode="batched", min_window_s=30)
    short = transcribe_many(base_model, requests, mode="batched", min_window_s=10)
    assert len(short) == len(requests)
    wer_full = word_error_rate(texts, [r.text for r in full[:3]])
    wer_short = word_error_rate(texts, [r.text for r in short[:3]])
    assert wer_short <= wer_full + 0.01, ([r.text for r in full], [r.text for r in short])
    assert word_error_rate(" ".join(texts * 2), short[3].text) <= 0.2, short[3].text
    for request, result in zip(requests, short):
        duration = len(request.audio) / SAMPLE_RATE
        assert result.words and all(0.0 <= w.start <= w.end <= duration for w in result.words)
        assert result.language == "en" and -5 < result.avg_logprob <= 0 and 0 <= result.no_speech_prob <= 1


def test_lanes_keep_each_streams_utterances_together_in_order_and_balance_the_audio():
    streams = ["a", "b", "a", "c", "d", "b"]
    seconds = [4.0, 1.0, 4.0, 3.0, 2.0, 1.0]
    lanes = split_lanes(streams, seconds, 2)
    assert sorted(i for lane in lanes for i in lane) == list(range(6))
    assert all(lane == sorted(lane) for lane in lanes)
    for stream in set(streams):  # a stream's utterances share a lane
        assert len({n for n, lane in enumerate(lanes) for i in lane if streams[i] == stream}) == 1
    loads = sorted(sum(seconds[i] for i in lane) for lane in lanes)
    assert loads == [7.0, 8.0]  # a: 8 s alone; b, c, d: 7 s
    assert split_lanes(["a", "a"], [1.0, 1.0], 4) == [[0, 1]]  # one stream: one lane
    assert split_lanes(["a", "b"], [1.0, 1.0], 1) == [[0, 1]]


def test_the_neighbours_of_a_skipped_packed_utterance_are_run_alone_too() -> None:
    """Issue 22's scaling test: identical utterances side by side in one window, one came back
    empty and its neighbour with the sentence twice. Both neighbours of the empty one are
    suspects; the rest of the window, and a window of its own, are left as they are."""
    from callstt.models.text.results import TranscriptionResult

    sentence = "Thank you for calling customer support."

    def result(text: str) -> TranscriptionResult:
        words = [Word(w, 0.1 * i, 0.1 * i + 0.1, 0.9) for i, w in enumerate(text.split())]
        return TranscriptionResult(text=text, language="en", language_probability=1.0, segments=[], words=words,
                                   model_name="base", backend="faster-whisper")

    windows = [[(0, 0.0), (1, 3.7), (2, 7.4), (3, 11.1)], [(4, 0.0)]]
    results = [result(sentence), result(sentence + " " + sentence), result(""), result(sentence), result("")]
    assert suspects(windows, results, [2.9] * 5) == {1, 2, 3}
    assert suspects(windows[:1], [result(sentence)] * 4, [2.9] * 4) == set()
