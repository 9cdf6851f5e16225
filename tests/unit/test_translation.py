"""Translation routing with the real packaged English<->Portuguese models (models/translation.py)
and the choice of target languages (streams/translation/core.py)."""

from __future__ import annotations

import time

import pytest

from models.translation import load_translation_router, sentences_of
from schemas.records import CallSettings, StreamSettings, Transcript, TranslationStatus
from streams.translation.core import targets_for, translate


@pytest.fixture(scope="module")
def router():
    return load_translation_router("bergamot")


def test_english_to_portuguese_sentence_by_sentence_and_back(router):
    result = router.translate("Thank you for calling. How can I help you today?", "en", "pt-BR")
    assert result.status == "ok" and result.target_language == "pt" and len(result.sentences) == 2
    assert "obrigad" in result.text.lower() and "ajud" in result.text.lower(), result.text
    back = router.translate("Obrigado. Até amanhã.", "pt", "en")
    assert back.status == "ok" and "thank" in back.text.lower(), back.text


def test_same_language_passes_through_and_an_uncovered_pair_is_said_not_raised(router):
    assert router.translate("Hello there.", "en", "en").status == "passthrough"
    unsupported = router.translate("Xin chào.", "vi", "en")
    assert (unsupported.status, unsupported.text, unsupported.backend) == ("unsupported_pair", "", "none")
    assert router.translate("   ", "en", "pt").text == ""
    with pytest.raises(ValueError, match="unknown backend"):
        load_translation_router("bergamot, nllb-magic")


def test_targets_come_from_the_stream_then_the_call_then_the_default():
    transcript = Transcript(transcript_id="t", call_id="c", stream_id="agent", utterance_index=0, text="Hi.",
                            language="en", language_probability=1.0, start_ms=0, end_ms=1, model_name="base",
                            backend="fw", avg_logprob=0.0, no_speech_prob=0.0, last_audio_capture_ts_ms=0,
                            last_audio_received_ts_ms=0, produced_ts_ms=int(time.time() * 1000))
    assert targets_for(transcript, None, ("pt", "PT")) == ("pt",)
    assert targets_for(transcript, CallSettings(call_id="c", translate_to=("en",)), ("pt",)) == ("en",)
    per_stream = CallSettings(call_id="c", translate_to=(), streams=(StreamSettings(stream_id="agent", translate_to=("pt", "vi")),))
    assert targets_for(transcript, per_stream, ()) == ("pt", "vi")
    assert targets_for(transcript, CallSettings(call_id="c", translate_to=()), ("pt",)) == ()


def test_a_transcript_gives_one_event_per_target_with_a_stable_id(router):
    transcript = Transcript(transcript_id="t-9", call_id="c", stream_id="caller", utterance_index=3,
                            text="Please call me back tomorrow morning.", language="en", language_probability=1.0,
                            start_ms=0, end_ms=1, model_name="base", backend="fw", avg_logprob=0.0, no_speech_prob=0.0,
                            last_audio_capture_ts_ms=0, last_audio_received_ts_ms=0, produced_ts_ms=1)
    events = translate(transcript, ("pt", "vi", "en"), router)
    assert [e.status for e in events] == [TranslationStatus.OK, TranslationStatus.UNSUPPORTED_PAIR,
                                          TranslationStatus.PASSTHROUGH]
    assert events[0].translation_id == translate(transcript, ("pt",), router)[0].translation_id
    assert events[0].utterance_index == 3 and events[0].transcript_id == "t-9" and events[0].text
    assert sentences_of("One. Two? Three!") == ["One.", "Two?", "Three!"]
