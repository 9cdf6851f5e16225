"""The speech agent's voice choice (models/voices.py): CALLSTT_SPEECH_VOICES parsed, a configured
voice per language, espeak-ng for the others, clear errors for what cannot work."""

from __future__ import annotations

import numpy as np
import pytest

from models.voices import EspeakVoice, PiperVoice, VoiceError, VoiceRouter, parse_voices, voice_from


def test_the_setting_names_a_voice_per_language():
    assert parse_voices("") == {}
    assert parse_voices(" en=piper:joe , PT=espeak-ng,") == {"en": "piper:joe", "pt": "espeak-ng"}
    with pytest.raises(VoiceError, match="language=engine"):
        parse_voices("en")
    with pytest.raises(VoiceError, match="language=engine"):
        parse_voices("=piper:joe")


def test_engines_by_name_and_what_is_refused():
    assert isinstance(voice_from("espeak-ng"), EspeakVoice)
    packaged = voice_from("piper:joe")
    assert isinstance(packaged, PiperVoice) and packaged.name == "piper en_US-joe-medium"
    assert voice_from("piper:/voices/pt_BR-faber-medium.onnx").name == "piper pt_BR-faber-medium"
    for wrong in ("piper", "piper:lessac", "coqui:xtts"):
        with pytest.raises(VoiceError):
            voice_from(wrong)


def test_a_piper_voice_without_its_files_says_what_it_needs(tmp_path):
    (tmp_path / "voice.onnx").write_bytes(b"not a model")
    with pytest.raises(VoiceError, match=r"\.onnx\.json"):
        PiperVoice(tmp_path / "voice.onnx").load()


class Recorded:
    def __init__(self, name: str) -> None:
        self.name, self.spoken = name, []

    def load(self) -> None:
        pass

    def speak(self, text: str, language: str) -> np.ndarray:
        self.spoken.append((text, language))
        return np.zeros(16, dtype=np.float32)


def test_each_language_goes_to_its_voice_and_the_rest_to_the_fallback():
    english, fallback = Recorded("piper en"), Recorded("espeak-ng")
    router = VoiceRouter({"en": english}, fallback)
    router.synthesize("Hello.", "en-US")
    router.synthesize("Olá.", "pt")
    assert english.spoken == [("Hello.", "en-US")] and fallback.spoken == [("Olá.", "pt")]
    assert router.describe() == {"voices": {"en": "piper en"}, "other_languages": "espeak-ng"}
