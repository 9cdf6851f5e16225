"""A call's vocabulary with the real packaged base model: the rare-word set (streams/bench/evaluation/rare_words.py).

Over the whole set (16 espeak-ng sentences, 18 rare-word occurrences), the call's hotwords must
raise rare-word recall clearly (not one lucky sentence), and must not cost the rest of the
transcript more than one WER point. Both as the worker runs today (one utterance per model call)
and packed (the sentences share 30 s windows, one vocabulary per window).
"""

from __future__ import annotations

import pytest

from callstt.streams.bench.evaluation.rare_words import CALL_VOCABULARY, count_word, measure

pytestmark = pytest.mark.integration

MIN_RECALL_GAIN = 0.4  # measured: +0.67 single, +0.72 packed (0.17 -> 0.83, 0.11 -> 0.83)
WER_TOLERANCE = 0.01  # one point


@pytest.fixture(scope="module")
def single(base_model) -> dict:
    return measure(base_model, mode="single", vocabulary=CALL_VOCABULARY, non_speech=True)


@pytest.fixture(scope="module")
def packed(base_model) -> dict:
    return measure(base_model, mode="packed", vocabulary=CALL_VOCABULARY, non_speech=False)


def summary(report: dict) -> str:
    return (f"{report['mode']}: recall {report['without']['recall']:.2f} -> {report['with']['recall']:.2f}, "
            f"WER {report['without']['wer']:.3f} -> {report['with']['wer']:.3f}, "
            f"model {report['without']['seconds']:.0f} s + {report['with']['seconds']:.0f} s; "
            f"missed with the vocabulary: {report['with']['missed']}")


def check(report: dict) -> None:
    without, with_ = report["without"], report["with"]
    print(summary(report))
    assert without["occurrences"] == with_["occurrences"] >= 16
    assert with_["recall"] - without["recall"] >= MIN_RECALL_GAIN, summary(report)
    assert with_["found"] >= 2 * max(without["found"], 1), summary(report)
    assert with_["wer"] <= without["wer"] + WER_TOLERANCE, summary(report)


def test_hotwords_raise_rare_word_recall_one_utterance_per_call(single) -> None:
    check(single)


def test_hotwords_raise_rare_word_recall_packed(packed) -> None:
    check(packed)


def test_the_vocabulary_does_not_leak_into_silence(single) -> None:
    """Given as faster-whisper's `hotwords` list, the words came out of 3 s of silence ("Kowalczyk,
    Kowalczyk, ..."); as a written prompt (models/text/vocabulary.py) they do not."""
    assert single["non_speech"]["leaked"] == [], single["non_speech"]["with"]


def test_rare_word_matching_rule() -> None:
    assert count_word("the account of Mrs. Nguyen-Hartley.", "Nguyen-Hartley") == 1
    assert count_word("Nguyen Hartley, NguyenHartley", "Nguyen-Hartley") == 2
    assert count_word("Nguyen-Hartley-Majra", "Nguyen-Hartley") == 0
    assert count_word("Zyntra's support, ZYNTRA!", "Zyntra") == 2
    assert count_word("Zyntras, Nguyen-Zyntra", "Zyntra") == 0
    assert count_word("a charge back", "chargeback") == 0


def test_a_long_vocabulary_is_cut_to_fit_and_never_fails_the_call(base_model) -> None:
    """Prompt and output share the decoder's 448 positions: a 150-word vocabulary on a 20 s
    utterance used to make faster-whisper refuse the call (alone and packed)."""
    import numpy as np

    from callstt.models.asr.batching import InferenceRequest, transcribe_many
    from callstt.models.text.vocabulary import Vocabulary
    from callstt.models.voices.synth import ENGLISH_SENTENCES, synthesize

    vocabulary = Vocabulary(hotwords=tuple(f"Product{n}x" for n in range(150)), initial_prompt="Support call.")
    long_audio = np.concatenate([synthesize(text, "en") for text in ENGLISH_SENTENCES[:6]])[:20 * 16000]
    assert base_model.prompt(vocabulary)[1] <= 160
    assert base_model.transcribe(long_audio, "en", vocabulary).text
    results = transcribe_many(base_model, [InferenceRequest(long_audio[:8 * 16000], "en", vocabulary),
                                           InferenceRequest(long_audio[8 * 16000:], "en", vocabulary)], "packed")
    assert all(result.text for result in results)
