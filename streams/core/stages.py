"""When each step of a final transcript happened: what the bench and the tests read to see what
holds a final back (issue: finals as soon as the model allows).

A final's way out, each step a time in ms (the worker's clock; the end of speech is the call
platform's capture clock, which the bench and tests share with the worker):

    speech end -> speculative cut (CALLSTT_SPECULATE_MS of silence; maybe none)
               -> final cut (CALLSTT_MIN_SILENCE_MS of silence: the endpoint is sure)
               -> the model call that decoded its words starts and ends (the speculation's, when
                  its result was used; else a call after the final cut)
               -> published (sent) -> acknowledged by the broker

and what happened to its speculation: "used" (its result became the final), "speech_came_back"
(discarded: the speaker went on, so the speech changed), "skipped" (cut, but the model had no
room for it, or a final at hand was late), "same_batch" (cut, but the batch it was in started
only after the final cut had come too: the worker was busy until then), or "none" (no
speculative cut: speculation is off, or the endpoint came without one).

Each model call is kept too (`ModelCall`: finals or interims, when, how many utterances), so a
final that waited behind an interim call can be told from the records alone.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

# How many of each the worker keeps for its /stages page (the most recent).
KEPT_FINALS = 4000
KEPT_MODEL_CALLS = 4000


@dataclass
class FinalStages:
    call_id: str
    stream_id: str
    utterance_index: int
    speech_end_ms: int
    cut_ms: int
    speculation: str  # used, speech_came_back, skipped, same_batch, none
    speculative_cut_ms: int | None = None
    model_started_ms: int | None = None
    model_ended_ms: int | None = None
    published_ms: int | None = None
    acknowledged_ms: int | None = None
    transcript_id: str | None = None  # None: the guard dropped it (nothing published)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelCall:
    kind: str  # "finals" (with any speculative cuts beside them) or "interims"
    started_ms: int
    ended_ms: int
    utterances: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class StageLog:
    """The most recent finals' stages and model calls (bounded), for the worker's /stages page.
    Model calls are added from the model thread, finals from the event loop: hence the lock."""

    def __init__(self, finals: int = KEPT_FINALS, model_calls: int = KEPT_MODEL_CALLS) -> None:
        self.finals: deque[FinalStages] = deque(maxlen=finals)
        self.model_calls: deque[ModelCall] = deque(maxlen=model_calls)
        self._lock = threading.Lock()

    def add_final(self, stages: FinalStages) -> None:
        with self._lock:
            self.finals.append(stages)

    def add_model_call(self, call: ModelCall) -> None:
        with self._lock:
            self.model_calls.append(call)

    def page(self, call_ids: set[str] | None = None) -> dict[str, Any]:
        """What /stages shows: every final kept (of `call_ids` when given) and every model call."""
        with self._lock:
            finals, calls = list(self.finals), list(self.model_calls)
        return {"finals": [f.as_dict() for f in finals if call_ids is None or f.call_id in call_ids],
                "model_calls": [c.as_dict() for c in calls]}


def ready_ms(final: dict[str, Any]) -> int:
    """When the final's speech could first go to the model: its speculative cut, else its final cut."""
    return final.get("speculative_cut_ms") or final["cut_ms"]


def interim_calls_waited_for(final: dict[str, Any], model_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The interim model calls that started after `final` was ready (its speculative cut, else its
    final cut) and ended before the model call that decoded it started: calls it waited behind
    (one that ran beside it, in the interim lane, held nothing). None known when it has no model
    call of its own."""
    started = final.get("model_started_ms")
    if started is None:
        return []
    return [call for call in model_calls if call["kind"] == "interims"
            and ready_ms(final) <= call["started_ms"] and call["ended_ms"] <= started]


def busy_at_cut(final: dict[str, Any], model_calls: list[dict[str, Any]]) -> str:
    """What the model thread was doing when `final` was ready (`ready_ms`): "interims", "finals" (a
    call of finals and speculations), or "idle"."""
    for call in model_calls:
        if call["started_ms"] <= ready_ms(final) < call["ended_ms"]:
            return call["kind"]
    return "idle"
