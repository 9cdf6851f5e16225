"""What the bench concludes from its live runs (streams/bench/sections.py capacity): pure arithmetic."""

from __future__ import annotations

from callstt.streams.bench.sections import capacity


def live_run(k: int, p95: float, grows: bool, transcripts: int = 40) -> dict:
    return {"calls": k, "end_of_speech_to_received_s": {"p95": p95}, "lag": {"grows": grows},
            "transcripts": transcripts}


def test_a_load_whose_p95_is_tens_of_seconds_is_bounded_perhaps_but_not_usable():
    runs = [live_run(1, 1.2, False), live_run(4, 2.8, False), live_run(8, 25.0, False), live_run(12, 80.0, True)]
    figures = capacity(runs, floor_rtf=0.3, speech=0.75, quick=False, live_seconds=120)
    assert figures["live_calls"] == 1 and figures["live_calls_p95_under_3_s"] == 4
    assert figures["latency_bounded"] == {"1": True, "4": True, "8": True, "12": False}
    short = capacity([live_run(1, 1.2, False, transcripts=4)], floor_rtf=0.3, speech=0.75, quick=True, live_seconds=15)
    assert short["latency_bounded"] == {"1": None}  # too short to tell
