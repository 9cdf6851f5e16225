"""How much invented text the guard removes, measured on the synthetic corpus (streams/bench/evaluation/nonspeech.py).

    report = measure_guard(backend)          # a FasterWhisperBackend or a ModelRouter
    report["invented_per_hour"]              # {"model": ..., "whisper_rule": ..., "guard": ...}

"model" counts every non-speech clip the model wrote words for; "whisper_rule" what is left after
the pipeline's rule before the guard (empty or no_speech: GuardConfig.whisper_rule()); "guard" what
is left after `judge` with `config`. Per hour of non-speech audio: the corpus holds about a minute
of it (two with the phone line), so one invented transcript is 60-110 an hour; the counts are there
too. A transcript of the buried sentence counts as invented unless it has the sentence's words
(`got_words`). Short answers and hard speech (cross-talk, speech in noise) report what was kept.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.text.guard import GuardConfig, judge, vad_speech_ratio
from callstt.models.text.results import TranscriptionResult
from callstt.streams.bench.evaluation.nonspeech import Clip, corpus
from callstt.streams.bench.evaluation.scoring import normalize

RECALL_FOR_WORDS = 0.5  # share of a reference's words a transcript must have to count as hearing it


@dataclass(frozen=True)
class Trial:
    """One clip through the model."""

    clip: Clip
    audio: np.ndarray
    result: TranscriptionResult
    language: str | None
    model_seconds: float

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    @property
    def said_words(self) -> bool:
        return bool(self.result.text.strip() and self.result.words)

    @property
    def got_words(self) -> bool:
        """The transcript holds most words of one of the clip's references."""
        return any(word_recall(reference, self.result.text) >= RECALL_FOR_WORDS for reference in self.clip.references)

    @property
    def invented(self) -> bool:
        """Words for a non-speech clip, other than the buried sentence's own."""
        return self.clip.kind == "non_speech" and self.said_words and not self.got_words


def word_recall(reference: str, hypothesis: str) -> float:
    """Share of the reference's (normalized) words that the hypothesis has, each counted once per use."""
    wanted = Counter(normalize(reference).split())
    if not wanted:
        return 0.0
    found = Counter(normalize(hypothesis).split())
    return sum(min(count, found[word]) for word, count in wanted.items()) / sum(wanted.values())


def transcribe_corpus(backend, clips: list[Clip] | None = None, language: str | None = "en") -> list[Trial]:
    """Each clip through `backend` (a backend, or a ModelRouter: anything with transcribe(audio,
    language)); with language None the language is detected first by the backend's (or the
    router's multilingual backend's) detect_language, as when no languages are configured."""
    detector = getattr(backend, "multilingual", backend)
    trials = []
    for clip in clips if clips is not None else corpus():
        audio = clip.make()
        started = time.perf_counter()
        chosen = language or detector.detect_language(audio)[0]
        result = backend.transcribe(audio, chosen)
        trials.append(Trial(clip, audio, result, chosen, time.perf_counter() - started))
    return trials


def summarize(trials: list[Trial], config: GuardConfig = GuardConfig()) -> dict:
    """The guard's figures over transcribed clips (see the module docstring)."""
    whisper_rule = GuardConfig.whisper_rule()
    rows, guard_seconds = [], 0.0
    for trial in trials:
        started = time.perf_counter()
        verdict = judge(trial.result, trial.audio, config)
        guard_seconds += time.perf_counter() - started
        rows.append({
            "clip": trial.clip.name, "kind": trial.clip.kind, "seconds": round(trial.seconds, 2),
            "language": trial.language, "text": trial.result.text,
            "no_speech_prob": round(trial.result.no_speech_prob, 3), "avg_logprob": round(trial.result.avg_logprob, 3),
            "speech_ratio": round(vad_speech_ratio(trial.audio, config.vad_threshold), 3),
            "invented": trial.invented, "got_words": trial.got_words,
            "whisper_rule": judge(trial.result, trial.audio, whisper_rule), "guard": verdict,
            "model_seconds": round(trial.model_seconds, 3),
        })
    non_speech = [r for r in rows if r["kind"] == "non_speech"]
    hours = sum(r["seconds"] for r in non_speech) / 3600
    invented = {"model": [r for r in non_speech if r["invented"]]}
    invented["whisper_rule"] = [r for r in invented["model"] if r["whisper_rule"] is None]
    invented["guard"] = [r for r in invented["model"] if r["guard"] is None]

    def kept(kind: str) -> dict:
        chosen = [r for r in rows if r["kind"] == kind]
        return {"kept": sum(r["guard"] is None for r in chosen), "of": len(chosen),
                "dropped": {r["clip"]: r["guard"] for r in chosen if r["guard"] is not None}}

    return {
        "non_speech_seconds": round(hours * 3600, 1),
        "invented": {name: len(found) for name, found in invented.items()},
        "invented_per_hour": {name: round(len(found) / hours, 1) if hours else 0.0 for name, found in invented.items()},
        "invented_by_model": {r["clip"]: r["text"] for r in invented["model"]},
        "dropped_because": dict(Counter(r["guard"] for r in invented["model"] if r["guard"])),
        "short_answers": kept("short_answer"),
        "hard_speech": kept("hard_speech"),
        "model_seconds": round(sum(t.model_seconds for t in trials), 2),
        "guard_ms_per_clip": round(1000 * guard_seconds / len(rows), 2) if rows else 0.0,
        "config": config,
        "clips": rows,
    }


def measure_guard(backend, config: GuardConfig = GuardConfig(), language: str | None = "en",
                  phone_line: bool = True) -> dict:
    """Transcribe the corpus (and its phone-line copy) with `backend` and summarize the guard on it."""
    return summarize(transcribe_corpus(backend, corpus(phone_line), language), config)
