"""Language routing: which backend and model transcribe an utterance, and the stream's sticky language.

The routing table maps a language to a backend: Vietnamese goes to the PhoWhisper route
when one is configured and loaded, everything else (and Vietnamese without PhoWhisper)
to the multilingual faster-whisper model. A route that fails to load is logged and
replaced by the multilingual one, as the service this project replaces did.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from models.results import TranscriptionResult
from models.vocabulary import NO_VOCABULARY, Vocabulary

log = logging.getLogger(__name__)

# Below this, a detected language is not trusted to stick to the stream.
STICKY_LANGUAGE_PROBABILITY = 0.6
# Language detection needs some speech; shorter utterances are transcribed without sticking.
MIN_DETECTION_SECONDS = 1.0


class Backend(Protocol):
    backend_name: str
    model_name: str

    def transcribe(self, audio: np.ndarray, language: str | None = None,
                   vocabulary: Vocabulary = NO_VOCABULARY) -> TranscriptionResult: ...

    def detect_language(self, audio: np.ndarray, allowed: Collection[str] = ()) -> tuple[str, float]: ...


@dataclass(frozen=True)
class LanguageChoice:
    """The language to transcribe with, and what the stream should remember."""

    language: str | None
    probability: float
    source: str  # "hint", "sticky", "detected" or "model" (let the model decide)


def best_allowed(ranked: Iterable[tuple[str, float]], allowed: Collection[str] = ()) -> tuple[str, float]:
    """The most likely language of Whisper's language distribution `ranked` ((code, probability)
    pairs), restricted to `allowed` (empty: any): the distribution masked to the allowed
    languages and renormalised, so the probability is the language's share among them. When
    none of `allowed` is in the distribution, the restriction is ignored."""
    pairs = [(code, float(probability)) for code, probability in ranked]
    kept = [(code, probability) for code, probability in pairs if code in allowed] if allowed else []
    if not kept:
        return max(pairs, key=lambda pair: pair[1])
    code, probability = max(kept, key=lambda pair: pair[1])
    return code, probability / (sum(p for _, p in kept) or 1.0)


def sticks(choice: "LanguageChoice", samples: int) -> bool:
    """The one rule for when a detected language sticks to its stream (later utterances skip
    detection): detected on at least MIN_DETECTION_SECONDS of audio, and confident."""
    from models.audio import SAMPLE_RATE

    return (choice.source == "detected" and samples >= MIN_DETECTION_SECONDS * SAMPLE_RATE
            and choice.probability >= STICKY_LANGUAGE_PROBABILITY)


@dataclass
class ModelRouter:
    multilingual: Backend
    routes: dict[str, Backend] = field(default_factory=dict)  # language -> dedicated backend
    notes: dict[str, str] = field(default_factory=dict)  # language -> why its route is not in use

    def backend_for(self, language: str | None) -> Backend:
        return self.routes.get(language or "", self.multilingual)

    def choose_language(self, audio: np.ndarray, hint: str | None, sticky: str | None,
                        sticky_probability: float, allowed: Collection[str] = ()) -> LanguageChoice:
        """The chunk's hint wins; then a confident sticky language; otherwise detect, among the
        `allowed` languages when given (e.g. a call restricted to vi and en)."""
        if hint:
            return LanguageChoice(hint, 1.0, "hint")
        if sticky and sticky_probability >= STICKY_LANGUAGE_PROBABILITY:
            return LanguageChoice(sticky, sticky_probability, "sticky")
        if not getattr(self.multilingual, "is_multilingual", True):
            return LanguageChoice("en", 1.0, "model")
        language, probability = self.multilingual.detect_language(audio, allowed)
        return LanguageChoice(language, probability, "detected")

    def transcribe(self, audio: np.ndarray, language: str | None,
                   vocabulary: Vocabulary = NO_VOCABULARY) -> TranscriptionResult:
        return self.backend_for(language).transcribe(audio, language, vocabulary)

    def describe(self) -> dict:
        """The routing table as operators see it on /models."""
        def entry(backend: Backend) -> dict:
            return {"backend": backend.backend_name, "model": backend.model_name, **getattr(backend, "details", {})}

        table = {language: entry(backend) for language, backend in self.routes.items()}
        table["*"] = entry(self.multilingual)
        return {"routes": table, "notes": dict(self.notes)}
