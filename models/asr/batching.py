"""Several utterances per model call: one at a time, batched, or packed into shared 30 s windows.

Whisper pads every input to a 30 s window, so the encoder costs as much for a 2 s utterance
as for a 30 s one. Three ways to run the utterances that are ready at one moment (across
calls) through a backend whose capabilities say `shared_windows` (faster-whisper's; the
model steps are its `transcribe_windows` and `transcribe_clips`, models/asr/routing.py
SharedWindowBackend; this module plans around them):

- ``single``: one utterance per model call (what the worker does today);
- ``batched``: each utterance in its own window, the windows encoded and decoded as one batch
  (``transcribe_windows``; for faster-whisper, models/asr/faster_whisper_compat.py). The window
  is Whisper's 30 s by default; with ``min_window_s`` below 30 it is sized to the utterance (its
  length rounded up to 5 s, at least ``min_window_s``): a 10 s window encodes
  ~4x faster than 30 s, but on real English speech cost 2-4 WER points (docs/benchmark.md);
- ``packed``: short utterances of the same language and vocabulary placed one after another in shared
  windows of at most ``window_s`` seconds, separated by ``gap_s`` of silence; each window is
  one encoder pass and one decode (WhisperX's idea, with its VAD merge); the words are split
  back to their utterances by their timestamps. Windows are batched too (``transcribe_clips``).

Every result is a ``TranscriptionResult`` relative to its own utterance (word times start at
0 at the utterance's first sample), exactly as ``backend.transcribe`` returns, so
``streams.core.transcripts.build_transcript`` takes it unchanged.

    results = transcribe_many(router, [InferenceRequest(audio, "en"), InferenceRequest(audio2, "vi")],
                              mode="packed")

A backend without ``capabilities.shared_windows`` (the transformers PhoWhisper route), a request without
a language, or an utterance longer than a window always runs one at a time. Requests share a
model call only with the same language and vocabulary (models/text/vocabulary.py): one window
has one prompt.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from callstt.models.asr.language_id import LanguageEvidence
from callstt.models.asr.routing import Backend, ModelRouter, SharedWindowBackend, as_router
from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.text.guard import GuardConfig, compression_ratio, repetition
from callstt.models.text.results import Segment, TranscriptionResult, Word, join_words
from callstt.models.text.vocabulary import NO_VOCABULARY, Vocabulary

log = logging.getLogger(__name__)

# Packed windows stay under Whisper's 30 s so nothing is trimmed by pad_or_trim.
DEFAULT_WINDOW_S = 28.0
DEFAULT_GAP_S = 0.8
DEFAULT_BATCH_SIZE = 8
FULL_WINDOW_S = 30.0  # Whisper's own window: every input padded to it
WINDOW_STEP_S = 5.0  # windows sized to the speech come in steps of this (few distinct sizes batch well)
# Whisper's no-speech token above the guard's own threshold: the decode says nothing about the
# language's fit (one notion of "the model heard no speech" for both).
NO_SPEECH_PROB = GuardConfig.no_speech_prob


@dataclass(frozen=True)
class InferenceRequest:
    """One utterance ready for the model: 16 kHz mono float32 audio, the language to use and the
    call's vocabulary."""

    audio: np.ndarray
    language: str | None
    vocabulary: Vocabulary = NO_VOCABULARY


@dataclass(frozen=True)
class Placement:
    """Where an utterance sits inside a packed window (seconds)."""

    request: int  # index into the requests
    start: float
    end: float


def plan_windows(durations: Sequence[float], window_s: float = DEFAULT_WINDOW_S,
                 gap_s: float = DEFAULT_GAP_S) -> list[list[tuple[int, float]]]:
    """Greedy packing in arrival order: windows of (request index, offset seconds).

    An utterance that does not fit the current window opens a new one; one longer than the
    window gets a window of its own (its caller runs it alone).
    """
    windows: list[list[tuple[int, float]]] = []
    cursor = 0.0
    for index, duration in enumerate(durations):
        if windows and windows[-1] and cursor + gap_s + duration <= window_s:
            offset = cursor + gap_s
            windows[-1].append((index, offset))
            cursor = offset + duration
        else:
            windows.append([(index, 0.0)])
            cursor = duration
    return windows


def assign_words(words: Sequence[Word], placements: Sequence[Placement]) -> dict[int, list[Word]]:
    """Words of a packed window split back to their utterances, times made utterance-relative.

    A word belongs to the utterance whose span holds the word's midpoint, or else to the
    nearest span (a word Whisper stretched into a gap). Times are clamped inside the utterance.
    """
    assigned: dict[int, list[Word]] = {p.request: [] for p in placements}
    for word in words:
        middle = (word.start + word.end) / 2

        def distance(p: Placement) -> float:
            return 0.0 if p.start <= middle <= p.end else min(abs(middle - p.start), abs(middle - p.end))

        home = min(placements, key=distance)
        length = home.end - home.start

        def local(t: float) -> float:
            return round(min(max(t - home.start, 0.0), length), 3)

        assigned[home.request].append(Word(word.text, local(word.start), local(word.end), word.probability))
    return assigned


# Fewer words than this per second of an utterance's audio (its 0.8 s of padding included), over
# at least SPARSE_MIN_S, is not speech the decoder followed: in a shared window it can skip an
# utterance's words and hand it a stray word of its neighbour ("Can" for "Thank you for calling
# customer support.", the scaling fault test of issue 22). Speech runs at 2-3 words a second; a
# short answer ("Yes.", 1.2 s with its padding) stays above the bound.
SPARSE_WORDS_PER_S = 0.6
SPARSE_MIN_S = 2.0


def needs_own_window(words: Sequence[Word], duration_s: float) -> bool:
    """Whether a packed utterance's words look like a decode that went wrong in its shared window,
    so it is worth a model call of its own: none at all, far too few for its length, or text the
    guard would drop as a loop (a neighbour's words run into it: seen with identical utterances
    side by side in one window)."""
    if not words or (duration_s >= SPARSE_MIN_S and len(words) / duration_s < SPARSE_WORDS_PER_S):
        return True
    text = _words_text(words)
    return compression_ratio(text) > GuardConfig().max_compression_ratio or repetition(text)


def _words_text(words: Sequence[Word]) -> str:
    return join_words(w.text for w in words)


def _result(backend, words: list[Word], language: str, avg_logprob: float, no_speech_prob: float,
            duration: float) -> TranscriptionResult:
    text = _words_text(words)
    segments = [Segment(text=text, start=words[0].start if words else 0.0,
                        end=words[-1].end if words else duration,
                        avg_logprob=avg_logprob, no_speech_prob=no_speech_prob)] if text else []
    return TranscriptionResult(text=text, language=language, language_probability=1.0, segments=segments,
                               words=words, model_name=backend.model_name, backend=backend.backend_name)


def window_seconds(duration_s: float, min_window_s: float) -> float:
    """The encoder window an utterance gets: its length rounded up to WINDOW_STEP_S, at least
    `min_window_s`, at most Whisper's 30 s (min_window_s >= 30: always 30 s, Whisper's own)."""
    rounded = math.ceil(max(duration_s, 0.01) / WINDOW_STEP_S) * WINDOW_STEP_S
    return float(min(FULL_WINDOW_S, max(min_window_s, rounded)))


def transcribe_windowed(backend: SharedWindowBackend, audios: Sequence[np.ndarray], language: str,
                        min_window_s: float, batch_size: int = DEFAULT_BATCH_SIZE,
                        vocabulary: Vocabulary = NO_VOCABULARY) -> list[TranscriptionResult]:
    """Each utterance in its own window sized to it (`window_seconds`), utterances with the same
    window `batch_size` at a time per model call (`backend.transcribe_windows`)."""
    durations = [len(audio) / SAMPLE_RATE for audio in audios]
    by_window: dict[float, list[int]] = defaultdict(list)
    for index, duration in enumerate(durations):
        by_window[window_seconds(duration, min_window_s)].append(index)
    results: list[TranscriptionResult | None] = [None] * len(audios)
    for window_s, indices in sorted(by_window.items()):
        for first in range(0, len(indices), max(1, batch_size)):
            part = indices[first:first + max(1, batch_size)]
            decoded = backend.transcribe_windows([audios[i] for i in part], window_s, language, vocabulary)
            for index, one in zip(part, decoded):
                results[index] = _result(backend, one.words, language, one.avg_logprob, one.no_speech_prob,
                                         durations[index])
    return results  # type: ignore[return-value]


def transcribe_batched(backend: SharedWindowBackend, audios: Sequence[np.ndarray], language: str,
                       batch_size: int = DEFAULT_BATCH_SIZE, vocabulary: Vocabulary = NO_VOCABULARY,
                       min_window_s: float = FULL_WINDOW_S) -> list[TranscriptionResult]:
    """Each utterance in its own window (sized to it above `min_window_s`; 30: Whisper's own),
    `batch_size` windows per encoder/decoder call."""
    if not audios:
        return []
    return transcribe_windowed(backend, audios, language, min_window_s, batch_size, vocabulary)


def transcribe_packed(backend: SharedWindowBackend, audios: Sequence[np.ndarray], language: str,
                      window_s: float = DEFAULT_WINDOW_S, gap_s: float = DEFAULT_GAP_S, batch_size: int = DEFAULT_BATCH_SIZE,
                      vocabulary: Vocabulary = NO_VOCABULARY) -> list[TranscriptionResult]:
    """Utterances packed into shared windows (gap_s of silence between them), windows batched."""
    if not audios:
        return []
    results: list[TranscriptionResult | None] = [None] * len(audios)
    durations = [len(audio) / SAMPLE_RATE for audio in audios]
    windows = plan_windows(durations, window_s, gap_s)
    separator = np.zeros(int(0.5 * SAMPLE_RATE), dtype=np.float32)  # between windows: clips never touch
    pieces, clips, placements_per_window, cursor = [], [], [], 0
    for window in windows:
        window_start = cursor / SAMPLE_RATE
        placements = []
        position = 0
        for index, offset in window:
            begin = int(round(offset * SAMPLE_RATE))
            if begin > position:
                pieces.append(np.zeros(begin - position, dtype=np.float32))
            pieces.append(audios[index].astype(np.float32, copy=False))
            position = begin + len(audios[index])
            placements.append(Placement(index, window_start + begin / SAMPLE_RATE,
                                        window_start + position / SAMPLE_RATE))
        pieces.append(separator)
        clips.append((window_start, window_start + position / SAMPLE_RATE))
        placements_per_window.append(placements)
        cursor += position + len(separator)
    joined = np.concatenate(pieces)
    outputs = backend.transcribe_clips(joined, clips, language, batch_size, vocabulary)
    for placements, decoded in zip(placements_per_window, outputs):
        for index, local in assign_words(decoded.words, placements).items():
            results[index] = _result(backend, local, language, decoded.avg_logprob, decoded.no_speech_prob,
                                     durations[index])
    for index in sorted(suspects(windows, results, durations)):
        # Never the words themselves: logs are not for call content (they are not redacted).
        log.info("packed utterance of %.1f s came back with %d words, or beside one that did: transcribing it "
                 "alone", durations[index], len(results[index].words))
        results[index] = backend.transcribe(audios[index], language, vocabulary)
    return results  # type: ignore[return-value]


def suspects(windows: Sequence[Sequence[tuple[int, float]]], results: Sequence[TranscriptionResult],
             durations: Sequence[float]) -> set[int]:
    """The utterances of shared windows worth a model call of their own. The decoder can skip an
    utterance inside a shared window (`needs_own_window`); the VAD heard speech there, so it is
    run alone rather than dropped as silence or kept with a neighbour's stray word. Its words
    went somewhere, most likely to a neighbour in the window, so its neighbours are run alone too:
    with identical utterances side by side (one recorded prompt on many calls) one came back empty
    and the next with the sentence twice, in the scaling fault test of issue 22."""
    chosen: set[int] = set()
    for window in windows:
        members = [index for index, _ in window]
        if len(members) < 2:
            continue
        for position, index in enumerate(members):
            if needs_own_window(results[index].words, durations[index]):
                chosen.update(members[max(position - 1, 0):position + 2])
    return chosen


def transcribe_many(router: ModelRouter | Backend, requests: Sequence[InferenceRequest], mode: str = "single",
                    batch_size: int = DEFAULT_BATCH_SIZE, window_s: float = DEFAULT_WINDOW_S,
                    gap_s: float = DEFAULT_GAP_S, min_window_s: float = FULL_WINDOW_S) -> list[TranscriptionResult]:
    """Transcribe the utterances ready now (any calls), results in request order.

    `router` is a models.asr.routing.ModelRouter, or a single backend (every language to it). Requests are grouped by backend, language and vocabulary; each group runs as `mode`
    says. Call it from the model thread, like `backend.transcribe`.
    """
    # The three modes below. Their names are offered to users by streams.settings (CALLSTT_INFERENCE_MODE's
    # choices); tests/unit/test_settings.py checks that those are exactly the names accepted here.
    if mode not in ("single", "batched", "packed"):
        raise ValueError(f"unknown inference mode {mode!r}: use one of single, batched, packed")
    results: list[TranscriptionResult | None] = [None] * len(requests)
    routes = as_router(router)
    groups: dict[tuple[int, str, Vocabulary], list[int]] = defaultdict(list)
    backends: dict[int, object] = {}
    for index, request in enumerate(requests):
        backend = routes.backend_for(request.language)
        long = len(request.audio) / SAMPLE_RATE > window_s
        if mode == "single" or request.language is None or long or not backend.capabilities.shared_windows:
            results[index] = backend.transcribe(request.audio, request.language, request.vocabulary)
            continue
        backends[id(backend)] = backend
        groups[(id(backend), request.language, request.vocabulary)].append(index)
    for (backend_id, language, vocabulary), indices in groups.items():
        backend = backends[backend_id]
        audios = [requests[i].audio for i in indices]
        if mode == "batched":
            outputs = transcribe_batched(backend, audios, language, batch_size, vocabulary, min_window_s)
        elif len(indices) == 1:
            outputs = [backend.transcribe(audios[0], language, vocabulary)]
        else:
            outputs = transcribe_packed(backend, audios, language, window_s, gap_s, batch_size, vocabulary)
        for index, output in zip(indices, outputs):
            results[index] = output
    return results  # type: ignore[return-value]


def split_lanes(streams: Sequence[str], seconds: Sequence[float], lanes: int) -> list[list[int]]:
    """Indices of utterances split into at most `lanes` groups to run as model calls at once:
    a stream's utterances stay together and in order (its language evidence carries from one to
    the next), the streams spread so the lanes hold about the same audio. Empty lanes are left out."""
    by_stream: dict[str, list[int]] = defaultdict(list)
    for index, stream in enumerate(streams):
        by_stream[stream].append(index)
    loads = [0.0] * max(1, lanes)
    groups: list[list[int]] = [[] for _ in loads]
    for indices in sorted(by_stream.values(), key=lambda group: -sum(seconds[i] for i in group)):
        lightest = loads.index(min(loads))
        groups[lightest] += indices
        loads[lightest] += sum(seconds[i] for i in indices)
    return [sorted(group) for group in groups if group]


@dataclass(frozen=True)
class PendingUtterance:
    """An utterance ready now, with what its stream knows: the worker's side of `choose_and_transcribe`."""

    stream: str  # any key of the stream (e.g. "call|stream"): the evidence carries within one batch
    audio: np.ndarray
    hint: str | None
    evidence: LanguageEvidence  # the stream's language evidence before this batch (models/asr/language_id.py)
    languages: tuple[str, ...] = ()  # detection picks among these (empty: any language)
    vocabulary: Vocabulary = NO_VOCABULARY


@dataclass(frozen=True)
class Decided:
    choice: object  # models.asr.routing.LanguageChoice
    result: TranscriptionResult
    model_seconds: float  # the batch's model time shared out by audio length
    evidence: LanguageEvidence  # the stream's language evidence after this utterance and its decode


def choose_and_transcribe(router, pending: Sequence[PendingUtterance], mode: str = "single",
                          batch_size: int = DEFAULT_BATCH_SIZE, window_s: float = DEFAULT_WINDOW_S,
                          gap_s: float = DEFAULT_GAP_S, min_window_s: float = FULL_WINDOW_S) -> list[Decided]:
    """The model step for every utterance ready at once: choose each one's language (hint > the
    stream's committed language > detection pooled with the stream's earlier detections, in
    arrival order, so a stream's later utterances in this batch see its earlier ones), then one
    `transcribe_many` in `mode`, then each decode counted in its stream's evidence (weak decodes
    in a committed language send the stream back to detecting). Run it in the model thread;
    results in input order."""
    started = time.perf_counter()
    evidence: dict[str, LanguageEvidence] = {}  # per stream, as this batch leaves it so far
    choices = []
    for item in pending:
        choice, evidence[item.stream] = router.choose_language(
            item.audio, item.hint or None, evidence.get(item.stream, item.evidence), item.languages)
        choices.append(choice)
    results = transcribe_many(router, [InferenceRequest(item.audio, choice.language, item.vocabulary)
                                       for item, choice in zip(pending, choices)],
                              mode, batch_size, window_s, gap_s, min_window_s)
    elapsed = time.perf_counter() - started
    total = sum(len(item.audio) for item in pending) or 1
    decided = []
    for item, choice, result in zip(pending, choices, results):
        if choice.source == "sticky":
            speech = bool(result.words) and result.no_speech_prob < NO_SPEECH_PROB
            evidence[item.stream] = evidence[item.stream].after_decode(result.avg_logprob, speech)
        decided.append(Decided(choice, result, elapsed * len(item.audio) / total, evidence[item.stream]))
    return decided
