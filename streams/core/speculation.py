"""Speculative endpoints: the model starts on an utterance before its end is sure.

The endpointer (models/audio/endpointing.py) ends an utterance after CALLSTT_MIN_SILENCE_MS of
silence (600 ms), but the words are all there much earlier. With CALLSTT_SPECULATE_MS set,
it also cuts the open utterance *speculatively* when its silence reaches that shorter
threshold; the worker runs the model on it when the model has room, and keeps the result
here, in memory, one per stream. When the final cut comes with the same speech (no voice
came back: `Utterance.same_speech`), its result is the one already computed, so the
transcript leaves as soon as the hangover ends instead of a model call later. When speech
came back, the speculative result is dropped unpublished and counted as wasted work.

Nothing here is kept in the table: a worker that restarts, or a stream that moves to another
worker, simply transcribes the final cut itself.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from callstt.streams.core.assembly import Utterance

# Streams with a speculative result waiting, at most (a stream that moved to another worker
# never sends its final cut here: the oldest results go first).
MAX_WAITING = 4096
NO_AUDIO = np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class Foreseen:
    utterance: Utterance  # the speculative cut
    decided: Any  # its models.asr.batching.Decided: the result, the language evidence, the model time
    model_started_ms: int = 0  # its model call (streams/core/stages.py)
    model_ended_ms: int = 0


@dataclass(frozen=True)
class Claim:
    """What a final cut found of its speculation: `foreseen` when its result can be used, and
    what happened (streams/core/stages.py): used, speech_came_back, skipped or none."""

    foreseen: Foreseen | None
    outcome: str
    speculative_cut_ms: int | None = None  # when its speculative cut came (worker clock), run or not

    @property
    def decided(self) -> Any | None:
        return self.foreseen.decided if self.foreseen else None


class Speculations:
    """Speculative results waiting for their final cut, one per stream (the latest); counts what
    happened to them in `counts` (run, used, discarded, skipped, and wasted model seconds)."""

    def __init__(self, max_waiting: int = MAX_WAITING) -> None:
        self.max_waiting = max_waiting
        self._waiting: OrderedDict[tuple[str, str], Foreseen] = OrderedDict()
        # Each stream's latest speculative cut that never ran, and why (streams/core/stages.py):
        # (its utterance index, "skipped" or "same_batch", when it was cut).
        self._not_run: OrderedDict[tuple[str, str], tuple[int, str, int]] = OrderedDict()
        self.counts: Counter = Counter()

    def __len__(self) -> int:
        return len(self._waiting)

    def keep(self, utterance: Utterance, decided: Any, model_started_ms: int = 0, model_ended_ms: int = 0) -> None:
        """A speculative result, until its final cut comes (it replaces the stream's earlier one,
        whose speech has changed since)."""
        self.counts["run"] += 1
        key = (utterance.call_id, utterance.stream_id)
        if key in self._waiting:
            self._discard(self._waiting.pop(key))
        self._not_run.pop(key, None)
        # Kept without its audio (what `same_speech` compares is the cut, not the samples).
        self._waiting[key] = Foreseen(replace(utterance, audio=NO_AUDIO), decided, model_started_ms, model_ended_ms)
        while len(self._waiting) > self.max_waiting:
            self._discard(self._waiting.popitem(last=False)[1])

    def take(self, final: Utterance) -> Claim:
        """The speculation that foresaw this final utterance, if any (a speculation of the stream
        that foresaw something else is dropped as wasted), and what happened to it."""
        key = (final.call_id, final.stream_id)
        index, why, cut_ms = self._not_run.pop(key, (None, "none", None))
        foreseen = self._waiting.get(key)
        if foreseen is None or foreseen.utterance.index > final.index:
            # nothing waiting, or it is about this stream's next utterance
            return Claim(None, why, cut_ms) if index == final.index else Claim(None, "none")
        del self._waiting[key]
        if not foreseen.utterance.same_speech(final):
            self._discard(foreseen)
            return Claim(None, "speech_came_back", foreseen.utterance.last_received_ts_ms)
        self.counts["used"] += 1
        return Claim(foreseen, "used", foreseen.utterance.last_received_ts_ms)

    def foresees(self, final: Utterance) -> bool:
        """Whether `take` would give this final a speculation's result (nothing is taken)."""
        foreseen = self._waiting.get((final.call_id, final.stream_id))
        return foreseen is not None and foreseen.utterance.index == final.index and \
            foreseen.utterance.same_speech(final)

    def skipped(self, utterances: Sequence[Utterance]) -> None:
        """Speculative cuts the model had no room for, or that came when a final at hand was late."""
        self.counts["skipped"] += len(utterances)
        self._remember_not_run(utterances, "skipped")

    def overtaken(self, utterances: Sequence[Utterance]) -> None:
        """Speculative cuts whose final cut came in the same batch: the model was busy until the
        endpoint was sure anyway (remembered for the finals' stages, not counted as work)."""
        self._remember_not_run(utterances, "same_batch")

    def _remember_not_run(self, utterances: Sequence[Utterance], why: str) -> None:
        for utterance in utterances:
            key = (utterance.call_id, utterance.stream_id)
            self._not_run.pop(key, None)
            self._not_run[key] = (utterance.index, why, utterance.last_received_ts_ms)
        while len(self._not_run) > self.max_waiting:
            self._not_run.popitem(last=False)

    def _discard(self, foreseen: Foreseen) -> None:
        self.counts["discarded"] += 1
        self.counts["wasted_seconds"] += foreseen.decided.model_seconds


def worth_running(speculative: Sequence[Utterance], finals: Sequence[Utterance], now_ms: int, budget_ms: int,
                  room: int) -> bool:
    """Speculation is best effort, never at a final's expense: the model runs speculative cuts
    only while every utterance at hand is on time (`now_ms` within `budget_ms` of its end of
    speech; the clocks of the call platform and the worker are taken to agree: a worker that is
    behind, or reads old audio, has its finals next anyway) and only when all of them fit in
    one model call of `room` utterances."""
    if not speculative or len(speculative) + len(finals) > room:
        return False
    return all(now_ms <= utterance.speech_end_capture_ms + budget_ms for utterance in [*finals, *speculative])
