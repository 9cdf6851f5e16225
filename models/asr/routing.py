"""Language routing: which backend and model transcribe an utterance, and which language it is in
(the stream's evidence: models/asr/language_id.py).

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

from callstt.models.asr.language_id import LanguageEvidence
from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.text.results import TranscriptionResult, Word
from callstt.models.text.vocabulary import NO_VOCABULARY, Vocabulary

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Capabilities:
    """What a backend can do. Batching, routing and the store ask this, never a backend's name."""

    # Several utterances per model call (models/asr/batching.py's batched and packed windows):
    # the backend is a `SharedWindowBackend`. Without it, every utterance is its own call.
    shared_windows: bool = False
    prompt: bool = True  # a call's vocabulary goes into the decoder prompt
    word_times: bool = True  # words carry their own start and end (else the segment's)
    devices: tuple[str, ...] = ("cpu",)  # where it runs ("cpu", "cuda", "auto")


class Backend(Protocol):
    """A speech recognition model: what the router, the core and batching call."""

    backend_name: str  # shown in transcripts and on /models, never branched on
    model_name: str
    capabilities: Capabilities

    def transcribe(self, audio: np.ndarray, language: str | None = None,
                   vocabulary: Vocabulary = NO_VOCABULARY) -> TranscriptionResult: ...

    def language_ranking(self, audio: np.ndarray, allowed: Collection[str] = ()) -> list[tuple[str, float]]: ...


@dataclass(frozen=True)
class Decoded:
    """One decoded clip or window: its words (seconds from its start), the mean log-probability
    of its segments (0.0 for none) and its highest no-speech probability (1.0 for none)."""

    words: list[Word]
    avg_logprob: float
    no_speech_prob: float


class SharedWindowBackend(Backend, Protocol):
    """A backend whose `capabilities.shared_windows` is true: the two model steps that
    models/asr/batching.py plans around (which utterances share a call, where each one's words
    go back) without knowing the model."""

    def transcribe_clips(self, audio: np.ndarray, clips: list[tuple[float, float]], language: str,
                         batch_size: int, vocabulary: Vocabulary = NO_VOCABULARY) -> list[Decoded]:
        """Each clip (start, end seconds) of `audio` decoded in one batched call: per clip, its
        words timed from `audio`'s start."""
        ...

    def transcribe_windows(self, audios: list[np.ndarray], window_s: float, language: str,
                           vocabulary: Vocabulary = NO_VOCABULARY) -> list[Decoded]:
        """Each utterance in its own window of `window_s` seconds (cut or padded), all in one
        encoder and decoder call: per utterance, its words, within its duration."""
        ...


@dataclass(frozen=True)
class LanguageChoice:
    """The language to transcribe with, and what the stream should remember."""

    language: str | None
    probability: float
    source: str  # "hint", "sticky" (the stream's committed language), "detected" or "model" (English-only model)


def allowed_ranking(ranked: Iterable[tuple[str, float]], allowed: Collection[str] = ()) -> list[tuple[str, float]]:
    """Whisper's language distribution `ranked` ((code, probability) pairs) restricted to
    `allowed` (empty: any): masked to the allowed languages and renormalised, so each
    probability is the language's share among them; best first. When none of `allowed` is in
    the distribution, the restriction is ignored."""
    pairs = [(code, float(probability)) for code, probability in ranked]
    kept = [(code, probability) for code, probability in pairs if code in allowed] if allowed else []
    if kept:
        total = sum(p for _, p in kept) or 1.0
        pairs = [(code, probability / total) for code, probability in kept]
    return sorted(pairs, key=lambda pair: -pair[1])


def best_allowed(ranked: Iterable[tuple[str, float]], allowed: Collection[str] = ()) -> tuple[str, float]:
    """The most likely language of `ranked` among `allowed` (see `allowed_ranking`)."""
    return allowed_ranking(ranked, allowed)[0]


def as_router(backend_or_router: Backend | ModelRouter) -> ModelRouter:
    """A router as is; a single backend as a router that sends every language to it."""
    if isinstance(backend_or_router, ModelRouter):
        return backend_or_router
    return ModelRouter(multilingual=backend_or_router)


@dataclass
class ModelRouter:
    multilingual: Backend
    routes: dict[str, Backend] = field(default_factory=dict)  # language -> dedicated backend
    notes: dict[str, str] = field(default_factory=dict)  # language -> why its route is not in use

    def backend_for(self, language: str | None) -> Backend:
        return self.routes.get(language or "", self.multilingual)

    def choose_language(self, audio: np.ndarray, hint: str | None, evidence: LanguageEvidence,
                        allowed: Collection[str] = ()) -> tuple[LanguageChoice, LanguageEvidence]:
        """The chunk's hint wins; then the stream's committed language (when still allowed);
        otherwise detect, among the `allowed` languages when given (e.g. a call restricted to vi
        and en), pool the detection with the stream's earlier ones and take the pool's best
        (models/asr/language_id.py). Returns the choice and the stream's evidence after it."""
        if hint:
            return LanguageChoice(hint, 1.0, "hint"), evidence
        evidence = evidence.restricted(allowed)
        if evidence.committed:
            return LanguageChoice(evidence.committed, evidence.probability, "sticky"), evidence
        if not getattr(self.multilingual, "is_multilingual", True):
            return LanguageChoice("en", 1.0, "model"), evidence
        ranking = self.multilingual.language_ranking(audio, allowed)
        evidence = evidence.pooled_with(allowed_ranking(ranking, allowed), len(audio) / SAMPLE_RATE)
        language, probability = evidence.best()
        return LanguageChoice(language, probability, "detected"), evidence

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
