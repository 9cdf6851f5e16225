"""What happens to speculative results (streams/core/speculation.py): pure bookkeeping, no model."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from callstt.streams.core.assembly import Utterance
from callstt.streams.core.speculation import Speculations, worth_running


@dataclass(frozen=True)
class FakeDecided:  # the fields of models.asr.batching.Decided that the bookkeeping reads
    text: str
    model_seconds: float = 0.5


def utterance(index: int = 0, speech_end_ms: int = 2000, capture_ms: int = 10_000, stream: str = "caller") -> Utterance:
    return Utterance("call", stream, index, np.zeros(16000, dtype=np.float32), start_ms=100, end_ms=speech_end_ms + 400,
                     reason="silence", hint="", last_capture_ts_ms=capture_ms, last_received_ts_ms=capture_ms,
                     speech_end_ms=speech_end_ms, speech_ms=1500, speculative=True)


def test_the_final_cut_takes_the_result_its_speculation_foresaw():
    speculations = Speculations()
    speculations.keep(utterance(), FakeDecided("hello"))
    final = replace(utterance(), speculative=False, end_ms=2400)
    assert speculations.take(final) == FakeDecided("hello")
    assert speculations.take(final) is None and len(speculations) == 0  # used once
    assert speculations.counts == {"run": 1, "used": 1}


def test_a_speculation_whose_speech_changed_is_wasted_never_used():
    speculations = Speculations()
    speculations.keep(utterance(speech_end_ms=2000), FakeDecided("first half"))
    speculations.keep(utterance(speech_end_ms=5000), FakeDecided("both halves"))  # the speaker went on
    assert speculations.take(replace(utterance(speech_end_ms=5600), speculative=False)) is None  # and on again
    assert speculations.counts == {"run": 2, "discarded": 2, "wasted_seconds": 1.0}


def test_other_streams_and_later_utterances_are_left_alone():
    speculations = Speculations(max_waiting=2)
    speculations.keep(utterance(index=3), FakeDecided("next"))
    assert speculations.take(replace(utterance(index=2), speculative=False)) is None  # an earlier utterance's final
    assert len(speculations) == 1
    speculations.keep(utterance(stream="agent"), FakeDecided("a"))
    speculations.keep(utterance(stream="third"), FakeDecided("b"))  # over the bound: the oldest goes
    assert len(speculations) == 2 and speculations.counts["discarded"] == 1


def test_speculation_runs_only_while_everyone_is_on_time_and_there_is_room():
    on_time, late = utterance(capture_ms=10_000), utterance(capture_ms=5_000)
    now = 10_000 + 1000  # on_time's speech ended 400 ms before its last audio: 1.4 s ago
    assert worth_running([on_time], [], now, budget_ms=1600, room=8)
    assert worth_running([on_time], [on_time] * 7, now, budget_ms=1600, room=8)
    assert not worth_running([on_time], [on_time] * 8, now, budget_ms=1600, room=8)  # no room
    assert not worth_running([on_time], [late], now, budget_ms=1600, room=8)  # a final is late
    assert not worth_running([late], [], now, budget_ms=1600, room=8)  # old audio: replay, or behind
    assert not worth_running([], [on_time], now, budget_ms=1600, room=8)
