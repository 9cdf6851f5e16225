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
    speculations.keep(utterance(), FakeDecided("hello"), model_started_ms=9_700, model_ended_ms=10_200)
    final = replace(utterance(), speculative=False, end_ms=2400)
    claim = speculations.take(final)
    assert (claim.decided, claim.outcome) == (FakeDecided("hello"), "used")
    assert (claim.foreseen.model_started_ms, claim.foreseen.model_ended_ms) == (9_700, 10_200)  # for its stages
    assert speculations.take(final).decided is None and len(speculations) == 0  # used once
    assert speculations.counts == {"run": 1, "used": 1}


def test_a_batch_asks_whether_its_finals_are_foreseen_before_taking_them():
    # (all foreseen: those finals go out before the batch's other speculative cuts run)
    speculations = Speculations()
    speculations.keep(utterance(), FakeDecided("hello"))
    final = replace(utterance(), speculative=False, end_ms=2400)
    assert speculations.foresees(final) and len(speculations) == 1  # asking takes nothing
    assert not speculations.foresees(replace(final, speech_end_ms=3000))  # the speaker went on
    assert not speculations.foresees(replace(final, index=1)) and not speculations.foresees(
        replace(final, stream_id="agent"))
    assert speculations.take(final).outcome == "used"


def test_a_speculation_whose_speech_changed_is_wasted_never_used():
    speculations = Speculations()
    speculations.keep(utterance(speech_end_ms=2000), FakeDecided("first half"))
    speculations.keep(utterance(speech_end_ms=5000), FakeDecided("both halves"))  # the speaker went on
    claim = speculations.take(replace(utterance(speech_end_ms=5600), speculative=False))  # and on again
    assert (claim.decided, claim.outcome) == (None, "speech_came_back")
    assert speculations.counts == {"run": 2, "discarded": 2, "wasted_seconds": 1.0}


def test_a_final_says_whether_its_speculation_was_skipped_or_never_cut():
    speculations = Speculations()
    speculations.skipped([utterance(index=4)])  # no room in the model for it
    assert speculations.take(replace(utterance(index=4), speculative=False)).outcome == "skipped"
    assert speculations.take(replace(utterance(index=5), speculative=False)).outcome == "none"
    speculations.skipped([utterance(index=6)])
    speculations.keep(utterance(index=6), FakeDecided("later, with room"))  # a later cut of it ran after all
    assert speculations.take(replace(utterance(index=6), speculative=False)).outcome == "used"
    speculations.overtaken([utterance(index=7)])  # its final cut came in the same batch
    assert speculations.take(replace(utterance(index=7), speculative=False)).outcome == "same_batch"
    assert speculations.counts["skipped"] == 2 and "same_batch" not in speculations.counts


def test_other_streams_and_later_utterances_are_left_alone():
    speculations = Speculations(max_waiting=2)
    speculations.keep(utterance(index=3), FakeDecided("next"))
    assert speculations.take(replace(utterance(index=2), speculative=False)).decided is None  # an earlier one's final
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


def test_finals_with_their_words_ready_go_first_each_stream_in_order():
    # The worker publishes these before the model call for the batch's other finals
    # (PipelineBatch.transcribe(foreseen_first=True)); a stream's later final never overtakes
    # an earlier one of it that still needs the model.
    from callstt.streams.core.pipeline import MemoryStore, Pipeline

    pipeline = Pipeline()
    for stream, index in (("caller", 1), ("agent", 4)):
        pipeline.speculations.keep(utterance(index, stream=stream), FakeDecided("ready"))
    final = lambda index, stream: (None, replace(utterance(index, stream=stream), speculative=False))  # noqa: E731
    ready = [final(0, "caller"), final(1, "caller"), final(4, "agent"), final(2, "other")]
    batch = pipeline.batch(MemoryStore().get)
    assert batch._foreseen_first(ready) == {2}  # caller 1 waits behind caller 0, which needs the model
    assert batch._foreseen_first(ready[1:]) == {0, 1}  # caller 1 and agent 4 go first; other 2 after them
