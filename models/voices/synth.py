"""Speech synthesized with espeak-ng, for demos, tests and the benchmark (no recordings needed)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from faster_whisper.audio import decode_audio

from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.schemas.errors import CallsttError

VOICES = {"en": "en-us", "vi": "vi"}


class SynthesisError(CallsttError, RuntimeError):
    """espeak-ng is missing or failed; the message says which and what to do."""


def synthesize_wav(text: str, path: Path, language: str = "en", words_per_minute: int = 160) -> Path:
    """Write `text` spoken by espeak-ng to a WAV file (22.05 kHz mono PCM16)."""
    if shutil.which("espeak-ng") is None:
        raise SynthesisError("espeak-ng is not installed: apt-get install espeak-ng (scripts/setup does it)")
    voice = VOICES.get(language, language)
    result = subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(path), text],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SynthesisError(f"espeak-ng failed for voice {voice}: {result.stderr.strip()}")
    return path


def synthesize(text: str, language: str = "en", words_per_minute: int = 160,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """`text` spoken by espeak-ng as mono float32 samples at `sample_rate` (by default the models' rate)."""
    with tempfile.TemporaryDirectory() as folder:
        wav = synthesize_wav(text, Path(folder) / "speech.wav", language, words_per_minute)
        return decode_audio(str(wav), sampling_rate=sample_rate)


def conversation(sentences: list[str], language: str = "en", sample_rate: int = SAMPLE_RATE,
                 silence_s: float = 1.0, lead_s: float = 0.5) -> np.ndarray:
    """The sentences spoken one after another with `silence_s` of silence between them."""
    silence = np.zeros(int(silence_s * sample_rate), dtype=np.float32)
    pieces = [np.zeros(int(lead_s * sample_rate), dtype=np.float32)]
    for text in sentences:
        pieces += [synthesize(text, language, sample_rate=sample_rate), silence]
    return np.concatenate(pieces)


# Sentences espeak-ng says clearly enough for the small models: demos, tests and the benchmark use them.
ENGLISH_SENTENCES = [
    "Please call me back tomorrow morning.",
    "I would like to book a table for two people.",
    "Thank you for calling customer support.",
    "Can you hear me clearly now?",
    "I need to change my delivery address.",
    "Have a great day and goodbye.",
    "My phone number is five five five, one two three four.",
    "We will send the invoice by email this afternoon.",
]
VIETNAMESE_SENTENCES = [
    "Xin chào, tôi muốn đặt một bàn cho hai người.",
    "Cảm ơn bạn đã gọi cho chúng tôi.",
    "Hôm nay trời rất đẹp.",
    "Tôi cần thay đổi địa chỉ giao hàng.",
]
