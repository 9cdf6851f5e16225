"""Where a final's time goes: the worker's per-utterance stage records (its /stages page,
streams/core/stages.py) for one live run, as offsets from the end of speech, p50/p95 each.

    speech end -> speculative cut -> final cut -> model start -> model end -> published
               -> acknowledged -> received (by the bench's reader)

A stage a final did not go through (no speculative cut) is left out of that stage's figures.
Beside them: what happened to each final's speculation, the model's own time per call (the
floor any final waits at least once), what the model was doing when each final was ready (its
speculative cut, else its final cut), and the finals that waited behind an interim model call
that started after they were ready.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from callstt.streams.bench.collecting import Arrival
from callstt.streams.bench.stats import summary
from callstt.streams.core.stages import busy_at_cut, interim_calls_waited_for

STAGES = ("speculative_cut_ms", "cut_ms", "model_started_ms", "model_ended_ms", "published_ms", "acknowledged_ms")


def stage_figures(page: dict[str, Any], arrivals: list[Arrival]) -> dict[str, Any]:
    """The run's finals (`page["finals"]`, those of the run's calls) against what the bench received."""
    received = {a.transcript.transcript_id: a.arrived_ms for a in arrivals}
    finals = [f for f in page.get("finals", []) if f.get("acknowledged_ms")]
    offsets: dict[str, list[float]] = {stage.removesuffix("_ms"): [] for stage in (*STAGES, "received_ms")}
    per_final = []  # each final's own way, for the JSON: which stage held which final
    for final in finals:
        row: dict[str, Any] = {"call_id": final["call_id"], "stream_id": final["stream_id"],
                               "utterance_index": final["utterance_index"], "speculation": final["speculation"],
                               "speech_end_ms": final["speech_end_ms"]}
        for stage in STAGES:
            if final.get(stage) is not None:
                row[stage.removesuffix("_ms")] = (final[stage] - final["speech_end_ms"]) / 1000
        if final["transcript_id"] in received:
            row["received"] = (received[final["transcript_id"]] - final["speech_end_ms"]) / 1000
        for stage in offsets:
            if stage in row:
                offsets[stage].append(row[stage])
        per_final.append(row)
    own_calls = [(f["model_ended_ms"] - f["model_started_ms"]) / 1000 for f in finals
                 if f.get("model_started_ms") is not None]
    calls = page.get("model_calls", [])
    waited = [f for f in finals if interim_calls_waited_for(f, calls)]
    return {
        "from_end_of_speech_s": {stage: _p50_p95(values) for stage, values in offsets.items()},
        "model_call_s": _p50_p95(own_calls),
        "speculation": dict(Counter(f["speculation"] for f in finals)),
        "finals": len(finals),
        "waited_behind_interims": len(waited),
        # What held the model when each final was ready (one whose speculation was used needed none).
        "model_when_ready": dict(Counter(busy_at_cut(f, calls) for f in finals if f["speculation"] != "used")),
        "per_final_s": per_final,  # seconds from the end of speech, per final
        # the model calls of the run (ms, the worker's clock), to lay the finals' stages against
        "model_calls": [c for c in calls if finals and c["ended_ms"] >= min(f["speech_end_ms"] for f in finals)],
    }


def _p50_p95(values: list[float]) -> dict[str, Any]:
    figures = summary(values)
    return {"n": figures["n"], "p50": figures["p50"], "p95": figures["p95"]}


def stage_line(figures: dict[str, Any]) -> str:
    """One report cell: each stage's p50/p95 from the end of speech, then the speculation outcomes."""
    stages = "; ".join(f"{stage} {v['p50']}/{v['p95']}" for stage, v in figures["from_end_of_speech_s"].items()
                       if v["n"])
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(figures["speculation"].items()))
    when_ready = ", ".join(f"{k} {v}" for k, v in sorted(figures.get("model_when_ready", {}).items())) or "-"
    return (f"{stages} s; model call {figures['model_call_s']['p50']}/{figures['model_call_s']['p95']} s; "
            f"speculation: {outcomes}; model when ready (speculation unused): {when_ready}; behind an interim "
            f"call started after it was ready: {figures['waited_behind_interims']} of {figures['finals']}")
