"""The speech agent's voice choice (models/voices/backends.py): CALLSTT_SPEECH_VOICES parsed, a configured
voice per language, espeak-ng for the others, clear errors for what cannot work."""

from __future__ import annotations

import numpy as np
import pytest

from callstt.models.voices.backends import EspeakVoice, PiperVoice, VoiceError, VoiceRouter, parse_voices, voice_from


def test_the_setting_names_a_voice_per_language():
    assert parse_voices("") == []
    assert parse_voices(" en=piper:joe , PT=espeak-ng,en=piper:/v/amy.onnx") == [
        ("en", "piper:joe"), ("pt", "espeak-ng"), ("en", "piper:/v/amy.onnx")]
    with pytest.raises(VoiceError, match="language=engine"):
        parse_voices("en")
    with pytest.raises(VoiceError, match="language=engine"):
        parse_voices("=piper:joe")


def test_engines_by_name_and_what_is_refused():
    assert isinstance(voice_from("espeak-ng"), EspeakVoice)
    packaged = voice_from("piper:joe")
    assert isinstance(packaged, PiperVoice) and (packaged.id, packaged.name) == ("joe", "piper en_US-joe-medium")
    local = voice_from("piper:/voices/pt_BR-faber-medium.onnx")
    assert (local.id, local.name) == ("pt_BR-faber-medium", "piper pt_BR-faber-medium")
    for wrong in ("piper", "piper:lessac", "coqui:xtts"):
        with pytest.raises(VoiceError):
            voice_from(wrong)


def test_a_piper_voice_without_its_files_says_what_it_needs(tmp_path):
    (tmp_path / "voice.onnx").write_bytes(b"not a model")
    with pytest.raises(VoiceError, match=r"\.onnx\.json"):
        PiperVoice(tmp_path / "voice.onnx").load()


class Recorded:
    def __init__(self, voice_id: str) -> None:
        self.id = self.name = voice_id
        self.spoken = []

    def load(self) -> None:
        pass

    def speak(self, text: str, language: str) -> np.ndarray:
        self.spoken.append((text, language))
        return np.zeros(16, dtype=np.float32)


def test_each_language_goes_to_its_default_voice_a_call_may_choose_another_and_the_rest_to_the_fallback():
    joe, amy, fallback = Recorded("joe"), Recorded("amy"), Recorded("espeak-ng")
    router = VoiceRouter({"en": [joe, amy]}, fallback)
    router.synthesize("Hello.", "en-US")
    router.synthesize("Hi.", "en", chosen="amy")
    router.synthesize("Hey.", "en", chosen="espeak-ng")  # the fallback is a choice in every language
    router.synthesize("Yo.", "en", chosen="/etc/passwd")  # not a configured voice: the default
    router.synthesize("Olá.", "pt", chosen="amy")  # not one of Portuguese's: its default, espeak-ng
    assert joe.spoken == [("Hello.", "en-US"), ("Yo.", "en")] and amy.spoken == [("Hi.", "en")]
    assert fallback.spoken == [("Hey.", "en"), ("Olá.", "pt")]
    assert router.describe() == {"voices": {"en": ["joe", "amy"]},
                                 "engines": {"joe": "joe", "amy": "amy", "espeak-ng": "espeak-ng"},
                                 "other_languages": "espeak-ng"}
