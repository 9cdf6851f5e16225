"""The bench's accuracy on real speech (`callstt bench --accuracy-only`) end to end on the test broker:
a few recordings of ../shared/speech (espeak sentences when the folder is absent) through the model
and a worker subprocess; the report has its per-language rows and the language-ID-by-length table.

No accuracy thresholds beyond "a number in range": the report measures, tests never fail on it.
"""

from __future__ import annotations

import json
import time

from callstt.streams.bench import run_bench
from callstt.streams.bench.accuracy import AccuracyOptions
from callstt.streams.bench.corpus import default_speech_dir

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
            lid = row[run]["lid"]
            assert _share(lid["clips"]) and _share(lid["utterances"]), (language, run, lid)
            assert isinstance(lid["utterance_count"], int) and lid["utterance_count"] >= 0, lid
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
    from callstt.streams.bench.accuracy import piece_spans
    from callstt.streams.bench.corpus import load_speech, select
    from callstt.streams.bench.evaluation.scoring import error_rate

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


def test_a_language_without_utterances_has_a_share_of_zero_and_a_count() -> None:
    from callstt.streams.bench.accuracy import _lid
    from callstt.streams.bench.corpus import SpeechClip

    clips = [SpeechClip("a", "vi", "xin chào", "espeak"), SpeechClip("b", "vi", "cảm ơn", "espeak")]
    assert _lid(clips, {"a": [], "b": []}) == {"clips": 0.0, "utterances": 0.0, "utterance_count": 0,
                                               "clips_without_transcript": 2}
    assert _lid(clips, {"a": [(0, "x", "vi")], "b": [(0, "y", "en"), (1, "z", "vi")]}) == \
        {"clips": 0.5, "utterances": 0.667, "utterance_count": 3, "clips_without_transcript": 0}


def test_the_collector_waits_for_the_last_batch_and_for_the_reader() -> None:
    """The worker's counters say every chunk taken and every utterance cut so far published while
    its last batch still waits for the model (backlog > 0): busy. Done only on two scrapes in a
    row, and once the reader is at the end of the transcript topic."""
    from confluent_kafka import TopicPartition

    from callstt.streams.bench.accuracy import _WorkerDone

    class Worker:
        def __init__(self) -> None:
            self.samples = [{}]

        def metrics(self) -> dict[str, float]:
            return self.samples[0]

    class Consumer:
        position_offset, high = 0, 4

        def assignment(self):
            return [TopicPartition("transcripts", 0)]

        def position(self, partitions):
            return [TopicPartition(p.topic, p.partition, self.position_offset) for p in partitions]

        def get_watermark_offsets(self, partition, timeout=None, cached=False):
            return 0, self.high

    class Reader:
        consumer = Consumer()

    worker, reader = Worker(), Reader()
    progress = _WorkerDone(worker, chunks=10, reader=reader, quiet_s=0.5)

    def poll(samples: dict[str, float]) -> bool:
        worker.samples[0], progress.last = samples, 0.0  # a scrape now
        return progress()

    taken = {"callstt_chunks_total": 10, 'callstt_utterances_total{reason="silence"}': 3,
             'callstt_transcripts_total{language="en",model="base"}': 3}
    # Everything taken and published, the reader at the end: still busy until the idle flush had
    # its chance to cut an utterance that ran to the clip's last sample (quiet_s after sending).
    Reader.consumer.position_offset = 4
    assert poll({**taken, 'callstt_consumer_lag_messages{partition="0"}': 0})  # nothing sent yet
    progress.sent()
    assert poll({**taken, 'callstt_consumer_lag_messages{partition="0"}': 0})  # sent a moment ago
    time.sleep(0.6)
    Reader.consumer.position_offset = 0
    assert poll({**taken, 'callstt_consumer_lag_messages{partition="0"}': 4})  # the last batch at the model
    Reader.consumer.position_offset = 4  # the reader has read the 4 transcripts there are
    assert poll({**taken, 'callstt_consumer_lag_messages{partition="0"}': 0})  # once is not enough
    done = {**taken, 'callstt_utterances_total{reason="end_of_stream"}': 1,
            'callstt_transcripts_total{language="en",model="base"}': 4, 'callstt_consumer_lag_messages{partition="0"}': 0}
    Reader.consumer.high = 5  # the last transcript: on the topic, not read yet
    assert poll(done) and poll(done)
    Reader.consumer.position_offset = 5
    assert not poll(done)
