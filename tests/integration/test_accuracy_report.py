"""The bench's accuracy on real speech (`callstt bench --accuracy-only`) end to end on the test broker:
a few recordings of ../shared/speech (espeak sentences when the folder is absent) through the model
and a worker subprocess; the report has its per-language rows and the language-ID-by-length table.

No accuracy thresholds beyond "a number in range": the report measures, tests never fail on it.
"""

from __future__ import annotations

import json

from streams.bench import run_bench
from streams.bench.accuracy import AccuracyOptions, default_speech_dir

SMALL = AccuracyOptions(lengths_s=(1.0,), clips_per_language={"en": 3, "vi": 2},
                        lid_clips_per_language={"en": 1, "vi": 1}, espeak_in_lid=0, synthesized_when_absent=True,
                        synthetic_checks=False)  # their sets have tests of their own


def _rate(value) -> bool:
    return value is not None and 0 <= value <= 3  # an error rate can pass 1 (insertions)


def _share(value) -> bool:
    return value is not None and 0 <= value <= 1


def test_accuracy_only_bench_reports_languages_and_lid_by_length(kafka_bootstrap, tmp_path) -> None:
    report = run_bench(out_dir=tmp_path, bootstrap=kafka_bootstrap, accuracy_only=True,
                       speech_dir=default_speech_dir(), accuracy=SMALL)

    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["command"] == "callstt bench --accuracy-only"
    for section in ("floor", "pipeline", "live", "capacity"):
        assert section not in report  # the accuracy alone
    table = (tmp_path / "bench.md").read_text()
    assert "## Accuracy on real speech" in table and "| 1 s | 8k | full_window |" in table

    section = saved["accuracy_real_speech"]
    assert section["runs"] == ["pipeline", "pipeline_vi_en"] and section["clips"] == 5
    assert all(section["worker_finished"].values())
    rows = {row["language"]: row for row in section["languages"]}
    assert set(rows) == {"en", "vi", "all"}
    assert rows["en"]["clips"] == 3 and rows["vi"]["clips"] == 2 and rows["en"]["metric"] == "wer"
    for language in ("en", "vi"):
        row = rows[language]
        assert _rate(row["floor"]) and _share(row["lid_floor"])
        for run in ("pipeline", "pipeline_vi_en"):
            assert row[run]["clips"] == row["clips"] and _rate(row[run]["error_rate"])
            assert _share(row[run]["lid"]["clips"]) and _share(row[run]["lid"]["utterances"])
    # English is what the model knows best: the pipeline must have heard most of it.
    assert rows["en"]["pipeline"]["error_rate"] < 0.6
    assert all({"run", "clip", "label", "text"} <= set(wrong) for wrong in section["wrong_language"])
    assert all(clip["pipeline"]["utterances"] for clip in section["per_clip"] if clip["language"] == "en")

    lid = section["lid_by_length"]
    real = section["clips_source"].startswith("recordings")  # else espeak sentences stand in
    cells = {(row["length"], row["rate"], row["method"]): row for row in lid["rows"]}
    assert set(cells) == {(length, rate, method) for length in ("1 s", "whole") for rate in ("16k", "8k")
                          for method in ("worker", "full_window")}
    for row in cells.values():
        assert row["pieces"] >= 2 and _share(row["real" if real else "espeak"]) and row["ms_per_detection"] > 0
    # Whole English clips at 16 kHz: the language is not in doubt.
    assert cells[("whole", "16k", "full_window")]["en" if real else "espeak"] >= 0.5


def test_the_scoring_and_the_pieces_need_no_model(tmp_path) -> None:
    from streams.bench.accuracy import error_rate, load_speech, piece_spans, select

    assert load_speech(tmp_path / "absent") is None and load_speech(None) is None
    (tmp_path / "manifest.tsv").write_text("audio/a.wav\ten\tone two\tsomewhere\naudio/b.wav\tvi\txin chào\t\n")
    clips = load_speech(tmp_path)
    assert [(c.name, c.language, c.reference) for c in clips] == [("a", "en", "one two"), ("b", "vi", "xin chào")]
    assert [c.name for c in select(clips, {"vi": 5})] == ["b"] and len(select(clips, 1)) == 2

    # Spoken digits against Whisper's digits, however grouped; Japanese by characters.
    assert error_rate("en", ["two nine three four zero"], ["29 340."]) == ("wer", 0.0)
    assert error_rate("ja", ["今日は晴れ"], ["今日は雨"])[0] == "cer"
    assert error_rate("en", ["hello world"], [""]) == ("wer", 1.0)

    assert piece_spans((0, 100), 30, 2) == [(0, 30), (70, 100)]
    assert piece_spans((10, 50), 30, 3) == [(15, 45)]  # one fits: the middle
    assert piece_spans((0, 20), 30, 1) == []
