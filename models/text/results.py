"""Typed results every transcription backend returns, whatever model ran."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# Whisper writes these without a space before them ("415-555", "4532,015", "gmail.com", "it's"):
# its words start with them when they carry no leading space.
NO_SPACE_BEFORE = tuple(",.;:!?%)]}-'@")


def join_words(texts: Iterable[str]) -> str:
    """Word texts (stripped, as the backends give them) joined as Whisper joins its text: a space
    between words, none before a word that starts with punctuation."""
    parts: list[str] = []
    for text in (text.strip() for text in texts):
        if not text:
            continue
        if parts and not text.startswith(NO_SPACE_BEFORE):
            parts.append(" ")
        parts.append(text)
    return "".join(parts)


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds from the start of the audio given to the model
    end: float
    probability: float


@dataclass(frozen=True)
class Segment:
    text: str
    start: float
    end: float
    avg_logprob: float
    no_speech_prob: float


@dataclass(frozen=True)
class TranscriptionResult:
    text: str
    language: str
    language_probability: float
    segments: list[Segment] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    model_name: str = ""
    backend: str = ""
    # Caveat about the timings for the transcript (e.g. word times only segment-level); "" = word-level.
    timestamps_note: str = ""

    @property
    def avg_logprob(self) -> float:
        """Mean of the segments' average log-probabilities (0.0 when nothing was said)."""
        if not self.segments:
            return 0.0
        return sum(s.avg_logprob for s in self.segments) / len(self.segments)

    @property
    def no_speech_prob(self) -> float:
        return max((s.no_speech_prob for s in self.segments), default=1.0)
