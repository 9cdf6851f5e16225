"""The benchmark end to end (quick mode) on the test broker: every section is there with sane values.

No timing thresholds: the bench reports speed, tests never fail on it.
"""

from __future__ import annotations

import json
import math

from callstt.streams.bench import run_bench


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_quick_bench_reports_every_section(kafka_bootstrap, tmp_path) -> None:
    report = run_bench(quick=True, out_dir=tmp_path, bootstrap=kafka_bootstrap, live_seconds=12.0)

    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["settings"] == report["settings"]
    table = (tmp_path / "bench.md").read_text()
    assert "overhead" in table and "capacity" in table and "inference packed" in table
    assert "interims received" in table

    for section in ("machine", "settings", "workload", "floor", "pipeline", "live", "capacity", "worker",
                    "accuracy", "inference_modes"):
        assert section in report, section
    assert report["machine"]["cpu_count"] >= 1 and report["machine"]["python"]

    floor, pipeline = report["floor"], report["pipeline"]
    assert floor["utterances"] > 0 and floor["seconds"] > 0
    assert pipeline["transcripts"] > 0 and pipeline["seconds"] > 0
    assert pipeline["overhead"] > 0
    stages = pipeline["where_the_time_goes"]
    assert stages["model_s"] > 0 and stages["assembly_s"] > 0 and stages["avro_decode_s"] > 0
    assert stages["audio_decode_s"] > 0 and stages["vad_s"] > 0
    assert stages["publish_s"] > 0 and stages["table_writes_s"] > 0
    assert pipeline["model_calls"] > 0
    assert pipeline["overhead_vs_floor_in_worker_mode"] > 0

    assert [live["calls"] for live in report["live"]] == [1, 2]
    pool = report["workload"]["live_calls_pool"]  # conversations: two participants, both line types
    assert {c["rate"] for c in pool} == {"8000 Hz MULAW", "16000 Hz PCM_S16LE"} and all(c["turns"] >= 2 for c in pool)
    for live in report["live"]:
        assert live["accuracy"]["wer_en"] is not None and 0 <= live["accuracy"]["wer_en"] < 0.6
        assert 0.5 <= live["accuracy"]["language_id_accuracy"] <= 1
        assert live["transcripts"] > 0
        for name in ("end_of_speech_to_received_s", "after_endpoint_to_received_s"):
            figures = live[name]  # well-formed percentiles, however long the machine took
            assert figures["n"] > 0 and all(_number(figures[q]) for q in ("p50", "p95", "p99")), (name, figures)
            assert figures["p50"] >= 0, (name, figures)
        # End of speech comes before the endpoint decision, so its latency is the longer one.
        assert live["end_of_speech_to_received_s"]["p50"] >= live["after_endpoint_to_received_s"]["p50"]
        assert isinstance(live["lag"]["grows"], bool)
        assert live["model"]["model_calls"] > 0 and live["model"]["utterances_per_model_call"] >= 1
        # Model seconds over the calls' duration: past 1 on a machine that cannot keep up live,
        # so a positive number here, not a share with a ceiling.
        assert _number(live["model"]["model_busy_fraction"]) and live["model"]["model_busy_fraction"] > 0
        # Interims (on by default): the block is there whatever the machine's speed.
        interims = live["interims"]
        assert interims["received"] >= 0 and interims["published"] >= 0 and "p95" in interims["word_delay_s"]
        assert live["model"]["model_busy_fraction_with_interims"] >= live["model"]["model_busy_fraction"]

    # Sentences with pauses (one speaker, 16 kHz PCM), and for every live run each final's way out
    # (the worker's /stages): one record per final received, its steps in order.
    assert [live["calls"] for live in report["live_pauses"]] == [1]
    assert all(c["sentences"] >= 2 for c in report["workload"]["pauses_calls_pool"])
    assert "pauses K=1" in table and "a final's way" in table
    for live in report["live"] + report["live_pauses"]:
        stages = live["stages"]
        steps = stages["from_end_of_speech_s"]
        assert stages["finals"] >= live["transcripts"] == steps["received"]["n"] > 0, stages
        assert sum(stages["speculation"].values()) == stages["finals"]
        # Each final's own record, in causal order (each step happens after the one it needs,
        # whatever the machine's speed: no time is bounded here).
        assert len(stages["per_final_s"]) == stages["finals"]
        for final in stages["per_final_s"]:
            assert final["cut"] <= final["published"] <= final["acknowledged"], final
            assert final["model_started"] <= final["model_ended"] <= final["published"], final

    # What each run's calls wrote to Kafka, counted from the topics themselves: the platform's
    # 20 ms chunks are 50 records a second per stream (two streams a conversation, one with
    # pauses), so only the run's own calls were counted; the changelog beside the audio.
    assert "written to Kafka per call-second" in table
    for live, streams in [(live, 2) for live in report["live"]] + [(live, 1) for live in report["live_pauses"]]:
        writes = live["kafka_writes"]
        assert writes["complete"], writes
        assert 45 * streams <= writes["records_per_call_second"]["audio"] <= 55 * streams, writes
        assert writes["bytes_per_call_second"]["transcripts"] > 0 and writes["changelog_per_audio_byte"] > 0, writes

    assert report["capacity"]["live_calls"] in (0, 1, 2)
    worker = report["worker"]
    assert worker["start_to_health_200_s"] > 0 and worker["model_load_s"] > 0
    assert 50 < worker["idle"]["VmRSS"] <= worker["peak_rss_mb"] < 8000

    english = report["accuracy"]["pipeline"]["wer_en"]
    assert english is not None and 0 <= english < 0.6
    assert 0 <= report["accuracy"]["pipeline"]["language_id_accuracy"] <= 1

    modes = report["inference_modes"]["modes"]
    assert set(modes) == {"single", "batched", "packed"}
    for mode in modes.values():
        assert mode["utterances_per_second"] > 0 and 0 <= mode["wer_en"] < 0.6
    assert report["inference_modes"]["best_within_1_point_wer"] in modes


def test_the_window_curve_reports_wer_and_time_per_window(base_model) -> None:
    """`callstt bench --windows` on espeak sentences alone (no recordings given): one row per rate
    and window, with sensible WER at both window lengths and the table in markdown."""
    from callstt.streams.bench.windows import markdown_lines, window_curve

    section = window_curve(base_model, None, windows=(10.0, 30.0), rates=("16k",), espeak=(4, 0))
    assert section["clips"] == {"en_espeak": 4}
    assert [(row["rate"], row["min_window_s"]) for row in section["rows"]] == [("16k", 10.0), ("16k", 30.0)]
    for row in section["rows"]:
        assert row["ms_per_utterance"] > 0 and 0 <= row["en_espeak"] <= 0.2, row
    table = "\n".join(markdown_lines(section))
    assert "| 16k | 10 s |" in table and "| 16k | 30 s |" in table
