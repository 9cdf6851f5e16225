"""The packaged model, through the model store, with no hub access."""

from __future__ import annotations

import shutil

import pytest

from callstt.models.asr.faster_whisper_backend import FasterWhisperBackend
from callstt.models.asr.store import ModelFileError, resolve_model
from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.voices.synth import ENGLISH_SENTENCES, synthesize
from callstt.streams.bench.evaluation.scoring import word_error_rate

pytestmark = pytest.mark.integration


def test_packaged_base_transcribes_english_within_10_percent_wer(base_model):
    sentences = ENGLISH_SENTENCES[:6]
    hypotheses = [base_model.transcribe(synthesize(text, "en"), language=None).text for text in sentences]
    wer = word_error_rate(sentences, hypotheses)
    print(f"packaged base, {len(sentences)} espeak-ng sentences: WER {wer:.3f}")
    assert wer <= 0.10, list(zip(sentences, hypotheses))


def test_packaged_base_detects_english_and_gives_word_timestamps(base_model):
    audio = synthesize(ENGLISH_SENTENCES[0], "en")
    result = base_model.transcribe(audio, language=None)
    assert result.language == "en" and result.language_probability > 0.5
    assert len(result.words) >= 5
    duration = len(audio) / SAMPLE_RATE
    starts = [word.start for word in result.words]
    assert starts == sorted(starts)
    assert all(0 <= word.start <= word.end <= duration + 0.1 for word in result.words)


def test_base_model_is_assembled_once_with_the_size_of_its_parts(tmp_path):
    first = resolve_model("base", cache_dir=tmp_path)
    size = (first / "model.bin").stat().st_size
    mtime = (first / "model.bin").stat().st_mtime_ns
    assert size == 2 * 72608766
    assert resolve_model("base", cache_dir=tmp_path) == first
    assert (first / "model.bin").stat().st_mtime_ns == mtime  # not rewritten


def test_tiny_en_resolves_to_its_package_directory(tmp_path):
    directory = resolve_model("tiny.en", cache_dir=tmp_path)
    assert (directory / "model.bin").is_file()
    assert not any(tmp_path.iterdir())  # nothing to assemble for a single-file package


def copy_model(tmp_path):
    source = resolve_model("tiny.en")
    target = tmp_path / "model"
    shutil.copytree(source, target)
    return target


def test_truncated_model_file_gives_one_clear_error_naming_it(tmp_path):
    model_dir = copy_model(tmp_path)
    model_bin = model_dir / "model.bin"
    model_bin.write_bytes(model_bin.read_bytes()[: 1 << 20])
    with pytest.raises(ModelFileError) as caught:
        FasterWhisperBackend(resolve_model(str(model_dir)), "broken")
    message = str(caught.value)
    assert str(model_bin) in message and "corrupted" in message
    assert "\n" not in message


def test_missing_model_file_gives_one_clear_error_naming_it(tmp_path):
    model_dir = copy_model(tmp_path)
    (model_dir / "model.bin").unlink()
    with pytest.raises(ModelFileError) as caught:
        resolve_model(str(model_dir))
    assert str(model_dir / "model.bin") in str(caught.value) and "missing" in str(caught.value)


def test_hub_ids_are_refused_unless_downloads_are_allowed(tmp_path):
    with pytest.raises(ModelFileError, match="CALLSTT_ALLOW_HUB_DOWNLOAD"):
        resolve_model("Systran/faster-whisper-small", cache_dir=tmp_path)


def test_fast_language_detection_agrees_with_the_full_window(base_model):
    """The short-window detection (default) names the language Whisper's own 30 s window names,
    on English and Vietnamese speech, 16 kHz and telephone 8 kHz mu-law."""
    from dataclasses import replace

    from callstt.models.audio.decoding import decode_stream_chunk
    from callstt.models.voices.synth import VIETNAMESE_SENTENCES
    from callstt.streams.client.producer import encode_samples

    def telephone(text: str, language: str):
        payload = encode_samples(synthesize(text, language, sample_rate=8000), "MULAW")
        return decode_stream_chunk(payload, "MULAW", 8000, 1, None, 10**7, end_of_stream=True)[0]

    audios = [synthesize(text, "en") for text in ENGLISH_SENTENCES[:4]] + \
        [telephone(text, "en") for text in ENGLISH_SENTENCES[4:8]] + \
        [synthesize(text, "vi") for text in VIETNAMESE_SENTENCES[:2]] + \
        [telephone(text, "vi") for text in VIETNAMESE_SENTENCES[2:4]]
    assert base_model.options.fast_language_detection
    fast = [base_model.detect_language(audio) for audio in audios]
    full_options = replace(base_model.options, fast_language_detection=False)
    fast_options, base_model.options = base_model.options, full_options
    try:
        full = [base_model.detect_language(audio) for audio in audios]
    finally:
        base_model.options = fast_options
    print("fast:", [(language, round(p, 2)) for language, p in fast])
    print("full:", [(language, round(p, 2)) for language, p in full])
    # The full window itself hears one telephone English sentence as Thai (th 0.4): the short
    # window's job is to agree with it, not to beat it.
    assert sum(language == "en" for language, _ in fast[:8]) >= 7
    assert [language for language, _ in fast] == [language for language, _ in full]


def test_detection_restricted_to_two_languages_never_answers_a_third(base_model):
    """espeak's Vietnamese voice often sounds Thai to the base model; a call known to be in
    Vietnamese or English (CALLSTT_LANGUAGES=vi,en) is only ever labelled one of them."""
    from callstt.models.voices.synth import VIETNAMESE_SENTENCES

    vietnamese = [synthesize(text, "vi") for text in VIETNAMESE_SENTENCES[:4]]
    english = [synthesize(text, "en") for text in ENGLISH_SENTENCES[:3]]
    free = [base_model.detect_language(audio)[0] for audio in vietnamese]
    restricted = [base_model.detect_language(audio, ("vi", "en"))[0] for audio in vietnamese]
    print("vi audio, free:", free, "restricted to vi,en:", restricted)
    assert set(restricted) <= {"vi", "en"}
    # Restricting only moves answers outside {vi, en} into it: an answer already inside stays. (How
    # many of espeak's Vietnamese clips the base model hears as Vietnamese depends on espeak-ng's
    # version and the machine: 3 of 4 restricted once, 2 of 4 here in December 2026 with espeak-ng 1.51.)
    assert all(after == before for before, after in zip(free, restricted) if before in ("vi", "en")), (free, restricted)
    assert "vi" in restricted
    assert [base_model.detect_language(audio, ("vi", "en"))[0] for audio in english] == ["en"] * 3
