"""A final's stage records (streams/core/stages.py) and the bench's reading of them
(streams/bench/stages.py): pure bookkeeping, no model, no broker."""

from __future__ import annotations

from dataclasses import dataclass

from callstt.streams.bench.stages import stage_figures
from callstt.streams.core.stages import FinalStages, ModelCall, StageLog, busy_at_cut, interim_calls_waited_for


def final(call: str = "c1", index: int = 0, speculation: str = "none", cut: int = 10_600, started: int = 10_700,
          ended: int = 11_300, transcript_id: str = "t0") -> FinalStages:
    return FinalStages(call, "caller", index, speech_end_ms=10_000, cut_ms=cut, speculation=speculation,
                       model_started_ms=started, model_ended_ms=ended, published_ms=ended + 10,
                       acknowledged_ms=ended + 30, transcript_id=transcript_id)


def test_an_interim_call_that_started_after_the_final_was_ready_is_one_it_waited_behind():
    calls = [ModelCall("interims", 10_400, 10_650, 1).as_dict(),  # started before the cut: not counted
             ModelCall("interims", 10_620, 10_690, 1).as_dict(),  # between cut and its model call: waited
             ModelCall("finals", 10_700, 11_300, 1).as_dict()]
    assert interim_calls_waited_for(final().as_dict(), calls) == [calls[1]]
    # a final whose speculation was used had its words before the cut: it waited for nothing
    assert interim_calls_waited_for(final(speculation="used", started=10_300, ended=10_590).as_dict(), calls) == []
    # one that ran beside the final's own call (the interim lane) held nothing
    beside = [ModelCall("interims", 10_620, 11_000, 1).as_dict()]
    assert interim_calls_waited_for(final().as_dict(), beside) == []
    assert busy_at_cut(final().as_dict(), calls) == "interims"  # the one of 10.4-10.65 s
    assert busy_at_cut(final(cut=11_400).as_dict(), calls) == "idle"


def test_the_log_is_bounded_and_filters_by_call():
    log = StageLog(finals=2, model_calls=1)
    for index, call in enumerate(("a", "b", "a")):
        log.add_final(final(call, index))
    log.add_model_call(ModelCall("finals", 1, 2, 1))
    log.add_model_call(ModelCall("interims", 3, 4, 1))
    page = log.page({"a"})
    assert [(f["call_id"], f["utterance_index"]) for f in page["finals"]] == [("a", 2)]  # (a, 0) is gone
    assert page["model_calls"] == [ModelCall("interims", 3, 4, 1).as_dict()]


@dataclass
class FakeTranscript:
    transcript_id: str


@dataclass
class FakeArrival:
    transcript: FakeTranscript
    arrived_ms: int


def test_the_bench_figures_are_offsets_from_the_end_of_speech():
    page = {"finals": [final(transcript_id="t0").as_dict(),
                       final(index=1, speculation="used", cut=10_600, started=10_300, ended=10_550,
                             transcript_id="t1").as_dict()],
            "model_calls": [ModelCall("interims", 10_610, 10_650, 1).as_dict()]}
    figures = stage_figures(page, [FakeArrival(FakeTranscript("t0"), 11_400), FakeArrival(FakeTranscript("t1"), 10_700)])
    stages = figures["from_end_of_speech_s"]
    assert stages["cut"]["p50"] == 0.6 and stages["cut"]["n"] == 2
    assert stages["speculative_cut"]["n"] == 0  # neither final recorded one
    assert (stages["model_started"]["n"], stages["received"]["n"]) == (2, 2)
    assert figures["speculation"] == {"none": 1, "used": 1}
    assert figures["waited_behind_interims"] == 1  # t0: cut at 10.6 s, an interim call at 10.61 s, its own at 10.7 s
    assert figures["model_call_s"]["p50"] == 0.425  # 0.6 s and 0.25 s
    assert figures["model_when_ready"] == {"idle": 1}  # t0: the interim call began after its cut; t1 needed no model
    # and each final's own way, for the JSON
    assert figures["per_final_s"][1] == {"call_id": "c1", "stream_id": "caller", "utterance_index": 1,
                                         "speculation": "used", "speech_end_ms": 10_000, "cut": 0.6, "model_started": 0.3, "model_ended": 0.55,
                                         "published": 0.56, "acknowledged": 0.58, "received": 0.7}
    assert figures["model_calls"] == page["model_calls"]  # the interim call at 10.61 s, after the first speech end

