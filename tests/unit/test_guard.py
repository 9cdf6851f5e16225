"""The guard's rules on hand-made transcripts (models/text/guard.py), and the corpus generators (streams/bench/evaluation/nonspeech.py)."""

from __future__ import annotations

import numpy as np
import pytest

from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.text.guard import (REASONS, GuardConfig, compression_ratio, is_hallucination_phrase, judge,
                                       repetition, vad_speech_ratio)
from callstt.models.text.results import Segment, TranscriptionResult, Word
from callstt.models.voices.synth import synthesize
from callstt.streams.bench.evaluation.nonspeech import DTMF, corpus, dial_tone, dtmf, silence, telephone

NO_AUDIO = np.zeros(0, dtype=np.float32)  # with speech_ratio given, the audio is never looked at


def result(text: str, no_speech_prob: float = 0.1, avg_logprob: float = -0.6) -> TranscriptionResult:
    words = [Word(w, 0.3 * i, 0.3 * i + 0.25, 0.9) for i, w in enumerate(text.split())]
    segments = [Segment(text, 0.0, 0.3 * len(words), avg_logprob, no_speech_prob)] if text else []
    return TranscriptionResult(text=text, language="en", language_probability=0.9, segments=segments, words=words)


def verdict(text: str, ratio: float = 0.5, **scores) -> str | None:
    return judge(result(text, **scores), NO_AUDIO, speech_ratio=ratio)


# --- each rule ---------------------------------------------------------------------------------------

def test_no_text_or_no_words_is_empty():
    assert verdict("") == "empty"
    assert judge(TranscriptionResult(text="Hello", language="en", language_probability=0.9), NO_AUDIO,
                 speech_ratio=1.0) == "empty"


def test_a_long_run_of_one_token_is_a_loop_and_a_real_sentence_is_not():
    loop = " ".join(["POP"] * 18)
    assert compression_ratio(loop) > 2.4 and verdict(loop) == "loop"
    assert verdict("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.") == "loop"
    sentence = "I would like to book a table for two people tomorrow evening at seven, near the window if possible."
    assert compression_ratio(sentence) < 2.4 and verdict(sentence) is None
    assert compression_ratio("Yes.") < 1  # short text never looks like a loop


@pytest.mark.parametrize("text", ["No, no, no, no.", "okay okay okay okay", "I'm sorry I'm sorry I'm sorry",
                                  "Thank you very much. Thank you very much. Thank you very much.",
                                  "0 0 0 0 0 0 0 0 0"])
def test_repeats_are_repetition(text):
    assert repetition(text)
    assert verdict(text) in ("repetition", "loop")


@pytest.mark.parametrize("text", ["No, no, no.", "I know, I know.", "Yes yes yes, that is right.",
                                  "Thank you. Thank you. Thank you.",  # a caller may thank three times
                                  "My number is five five five, five five five, one two three four.",
                                  "Zero zero zero one.", "It is 1 0 0 0 0 0 1."])
def test_ordinary_repeats_and_phone_numbers_are_not_repetition(text):
    assert not repetition(text)
    assert verdict(text) is None


def test_a_sentence_said_three_times_is_repetition_even_below_the_loop_ratio():
    text = "I need to change my address. I need to change my address. I need to change my address."
    assert compression_ratio(text) < 2.4
    assert verdict(text) == "repetition"


def test_whispers_no_speech_rule_needs_a_weak_decode_too():
    assert verdict("Thank you.", no_speech_prob=0.7, avg_logprob=-1.2) == "no_speech"
    assert verdict("Thank you.", no_speech_prob=0.7, avg_logprob=-0.5) is None
    assert verdict("Thank you.", no_speech_prob=0.5, avg_logprob=-1.5) is None


def test_text_where_the_vad_hears_no_speech_is_dropped_unless_the_decode_is_sure():
    invented = "I'm not going to let you down."
    assert verdict(invented, ratio=0.0, no_speech_prob=0.51, avg_logprob=-0.81) == "low_speech_ratio"
    assert verdict(invented, ratio=0.01, no_speech_prob=0.2, avg_logprob=-0.9) == "low_speech_ratio"
    assert verdict(invented, ratio=0.05, no_speech_prob=0.51, avg_logprob=-0.81) is None  # a little speech: kept
    assert verdict(invented, ratio=0.0, no_speech_prob=0.2, avg_logprob=-0.3) is None  # a sure decode: kept


def test_thank_you_is_kept_whenever_the_vad_heard_speech_and_dropped_when_it_heard_none():
    for ratio in (0.05, 0.2, 0.3, 0.9):
        assert verdict("Thank you.", ratio=ratio) is None
        assert verdict("Bye.", ratio=ratio) is None
    assert verdict("Thank you.", ratio=0.0, no_speech_prob=0.6) == "low_speech_ratio"


@pytest.mark.parametrize("text", ["Thanks for watching!", "Thank you for watching.",
                                  "Subtitles by the Amara.org community", "Please subscribe. Thanks for watching!",
                                  "ご視聴ありがとうございました", "Sous-titres réalisés par la communauté d'Amara.org"])
def test_media_credits_are_dropped_only_when_the_audio_has_little_speech(text):
    assert is_hallucination_phrase(text)
    assert verdict(text, ratio=0.3) == "hallucination_phrase"
    assert verdict(text, ratio=0.8) is None  # the VAD says someone spoke most of the time: kept


def test_a_credit_after_real_words_keeps_the_words():
    for text in ("I need help with my order. Thanks for watching!", "Thank you.", "Thanks.", "Watching TV."):
        assert not is_hallucination_phrase(text)
        assert verdict(text, ratio=0.3) is None


def test_the_whisper_rule_config_is_the_pipelines_old_rule_and_every_reason_is_known():
    old = GuardConfig.whisper_rule()
    assert verdict(" ".join(["POP"] * 18)) == "loop"
    assert judge(result(" ".join(["POP"] * 18)), NO_AUDIO, old, speech_ratio=0.0) is None
    assert judge(result("Thank you.", 0.7, -1.2), NO_AUDIO, old) == "no_speech"
    assert judge(result(""), NO_AUDIO, old) == "empty"
    with pytest.raises(AttributeError):
        GuardConfig().min_speech_ratio = 0.5  # frozen
    assert set(REASONS) == {"empty", "no_speech", "low_speech_ratio", "loop", "repetition", "hallucination_phrase"}


# --- the VAD, run by the guard itself ------------------------------------------------------------------

def test_the_guard_runs_the_vad_on_the_audio_when_no_ratio_is_given():
    speech = np.concatenate([silence(0.4), synthesize("Thank you."), silence(0.6)])
    assert vad_speech_ratio(silence(2.0)) == 0.0 and vad_speech_ratio(dial_tone()) == 0.0
    assert vad_speech_ratio(speech) > 0.15
    assert vad_speech_ratio(NO_AUDIO) == 0.0
    thank_you = result("Thank you.", no_speech_prob=0.5, avg_logprob=-0.8)
    assert judge(thank_you, speech) is None
    assert judge(thank_you, silence(2.0)) == "low_speech_ratio"


# --- the corpus --------------------------------------------------------------------------------------

@pytest.mark.parametrize("clip", corpus(), ids=lambda clip: clip.name)
def test_every_clip_is_2_to_8_s_of_16k_float32_and_the_same_each_time(clip):
    audio = clip.make()
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 2.0 <= len(audio) / SAMPLE_RATE <= 8.0
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) <= 1.0
    assert np.array_equal(audio, clip.make())


def peaks(audio: np.ndarray, count: int) -> list[float]:
    spectrum = np.abs(np.fft.rfft(audio))
    frequencies = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    found = []
    for index in np.argsort(spectrum)[::-1]:
        if all(abs(frequencies[index] - f) > 20 for f in found):
            found.append(float(frequencies[index]))
        if len(found) == count:
            return sorted(found)
    return sorted(found)


def test_tones_are_the_real_dtmf_pairs_and_dial_tone():
    assert peaks(dial_tone(), 2) == pytest.approx([350, 440], abs=1)
    key = dtmf("5", tone_s=1.0, lead_s=0.5)
    assert DTMF["5"] == (770, 1336)
    assert peaks(key, 2) == pytest.approx(list(DTMF["5"]), abs=2)


def test_the_phone_line_keeps_the_length_and_drops_what_a_phone_cannot_carry():
    wide = synthesize("Please call me back tomorrow morning.")
    narrow = telephone(wide)
    assert len(narrow) == len(wide) and narrow.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(narrow)) ** 2
    frequencies = np.fft.rfftfreq(len(narrow), 1 / SAMPLE_RATE)
    assert spectrum[frequencies > 4000].sum() < 1e-3 * spectrum.sum()
    assert spectrum[(frequencies > 300) & (frequencies < 3400)].sum() > 0.9 * spectrum.sum()


# --- the measurement ---------------------------------------------------------------------------------

class SaysThankYou:
    """A stand-in model that says "Thank you." to everything, like Whisper on silence."""

    def transcribe(self, audio, language=None):
        return result("Thank you.", no_speech_prob=0.5, avg_logprob=-0.7)

    def detect_language(self, audio, allowed=()):
        return "en", 0.9


def test_the_report_counts_inventions_per_hour_and_short_answers_kept():
    from callstt.streams.bench.evaluation.guard_report import summarize, transcribe_corpus, word_recall

    assert word_recall("Please call me back.", "please call the back") == 0.75
    assert word_recall("No, no.", "no") == 0.5
    report = summarize(transcribe_corpus(SaysThankYou(), language=None))
    assert report["invented"] == {"model": 9, "whisper_rule": 9, "guard": 0}
    assert report["invented_per_hour"]["model"] == pytest.approx(9 * 3600 / report["non_speech_seconds"], rel=0.01)
    assert report["dropped_because"] == {"low_speech_ratio": 9}
    assert report["short_answers"] == {"kept": 12, "of": 12, "dropped": {}}
    assert report["hard_speech"]["kept"] == 2
