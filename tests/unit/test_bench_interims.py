"""The bench's interim figures (streams/bench/interims.py), its interim reader and `--partials`:
hand-made Transcript records and a fake reader, no Kafka, no model."""

from __future__ import annotations

import threading
import time

import pytest

from callstt.schemas.records import Transcript, TranscriptWord
from callstt.streams.bench.collecting import Arrival, RecordCollector
from callstt.streams.bench.interims import (capture_ms, changed_words, first_interim_delays, interim_figures,
                                            interim_metrics, normalised, word_delays)
from callstt.streams.bench.report import interim_line
from callstt.streams.bench.run import PARTIALS_ON_MS, with_partials, worker_env
from callstt.streams.bench.sections import _model_use
from callstt.streams.settings import Settings

CAPTURED = 1_000_000  # capture time (platform clock, ms) of stream time 0 in these records


def record(texts: list[str], *, index: int = 0, final: bool = False, end_ms: int | None = None, stable: int = 0,
           call_id: str = "call", start_ms: int = 0, capture: bool = True) -> Transcript:
    """A transcript whose words are 300 ms apart from `start_ms` (each 250 ms long) and whose audio
    ends at `end_ms` (default: its last word's end), captured in real time from CAPTURED."""
    words = [TranscriptWord(text=f" {text}", start_ms=start_ms + 300 * i, end_ms=start_ms + 300 * i + 250,
                            probability=0.9) for i, text in enumerate(texts)]
    end = end_ms if end_ms is not None else (words[-1].end_ms if words else start_ms)
    return Transcript(transcript_id=f"{call_id}/caller/{index}", call_id=call_id, stream_id="caller",
                      utterance_index=index, is_final=final, text=" ".join(texts), language="en",
                      language_probability=0.9, start_ms=start_ms, end_ms=end, words=words, model_name="m",
                      backend="b", avg_logprob=-0.2, no_speech_prob=0.01,
                      last_audio_capture_ts_ms=CAPTURED + end if capture else 0, last_audio_received_ts_ms=0,
                      produced_ts_ms=0, revision=0 if final else 1, stable_word_count=stable)


def at(transcript: Transcript, stream_ms: int) -> Arrival:
    """`transcript` read at the wall time when stream time `stream_ms` was captured."""
    return Arrival(transcript, CAPTURED + stream_ms)


def test_capture_time_of_a_stream_time_counts_back_from_the_records_last_audio():
    interim = record(["hello", "there"], end_ms=800)  # audio to 800 ms, captured at CAPTURED + 800
    assert capture_ms(interim, 250) == CAPTURED + 250
    assert capture_ms(record(["hello"], capture=False), 250) is None  # no capture time: no figure


def test_each_word_position_is_timed_at_the_first_interim_that_shows_it():
    first = record(["hello", "there"], end_ms=600)  # words end at 250 and 550
    second = record(["hello", "their", "friend"], end_ms=900)  # a new third word, ending at 850
    other = record(["yes"], index=1, start_ms=2000, end_ms=2300)
    # Listed out of arrival order: the order that counts is arrival's.
    delays = word_delays([at(second, 1300), at(other, 2500), at(first, 1000)])
    assert sorted(delays) == pytest.approx(sorted([0.75, 0.45, 0.45, 0.25]))
    # A shorter later revision shows no new position, and a word once shown is not timed again.
    assert word_delays([at(first, 1000), at(record(["hello"]), 1100)]) == pytest.approx([0.75, 0.45])


def test_first_interim_is_timed_from_the_finals_speech_start_else_the_interims():
    interim = record(["there"], start_ms=600, end_ms=1000)
    final = record(["so", "there"], final=True, start_ms=300)  # the final heard speech from 300 ms
    finals = {final.transcript_id: final}
    assert first_interim_delays([at(interim, 1200), at(record(["there", "you"], start_ms=600), 1500)],
                                finals) == pytest.approx([0.9])
    assert first_interim_delays([at(interim, 1200)], {}) == pytest.approx([0.6])  # no final: the interim's word
    no_words = record([], start_ms=400, end_ms=1000)
    assert first_interim_delays([at(no_words, 1200)], {}) == pytest.approx([0.8])  # no words: its own start


def test_changed_words_ignore_case_and_punctuation_and_count_stable_words_apart():
    assert normalised([" Hello,", " THERE.", " -", " việt"]) == ["hello", "there", "việt"]
    final = record(["Hello,", "there", "how", "can", "I", "help?"], final=True)
    interims = [at(record(["hello", "their"], stable=1), 500),  # "their" changed
                at(record(["Hello", "there", "who", "can"], stable=2), 900),  # "who" changed
                at(record(["nothing", "final"], index=7), 1000)]  # no final arrived: not counted
    figures = changed_words(interims, {final.transcript_id: final})
    assert figures["interim_words"] == 6 and figures["changed_share"] == pytest.approx(2 / 6, abs=1e-3)
    assert figures["stable_words"] == 3 and figures["stable_changed_share"] == 0
    assert changed_words([], {})["changed_share"] is None


def metrics(published: float, skipped: float, model_interims: float, model: float = 0.0) -> dict[str, float]:
    return {'callstt_interims_total{outcome="published"}': published,
            'callstt_interims_total{outcome="skipped"}': skipped,
            'callstt_stage_seconds_total{stage="model_interims"}': model_interims,
            'callstt_stage_seconds_total{stage="model"}': model}


def test_worker_figures_are_deltas_over_the_run_and_the_model_busy_share_counts_interims_apart():
    before, after = metrics(3, 1, 2.0, 5.0), metrics(13, 4, 6.0, 15.0)
    figures = interim_metrics(before, after, 20.0)
    assert (figures["published"], figures["skipped"], figures["dropped"], figures["failed"]) == (10, 3, 0, 0)
    assert figures["model_seconds"] == 4.0 and figures["model_busy_fraction"] == 0.2
    model = _model_use(before, after, 20.0)
    assert model["model_busy_fraction"] == 0.5 and model["model_busy_fraction_with_interims"] == 0.7


def test_the_live_block_and_its_report_line():
    finals = [Arrival(record(["hi", "there"], final=True, index=i), 5000 + i) for i in range(4)]
    interims = [at(record(["hi"], index=0), 900), at(record(["hi", "there"], index=0), 1200),
                at(record(["hi"], index=2), 900)]
    figures = interim_figures(interims, finals, metrics(0, 0, 0.0), metrics(2, 1, 1.0), 10.0)
    assert figures["received"] == 3 and figures["published"] == 2 and figures["final_utterances"] == 4
    assert figures["utterances_with_interims_share"] == 0.5  # 2 of the 4 finals had interims
    assert figures["word_delay_s"]["n"] == 3 and figures["first_interim_after_speech_start_s"]["n"] == 2
    assert figures["changed_share"] == 0.0
    line = interim_line("live K=1", figures)
    assert line.startswith("| live K=1: interims received") and "| 3 (2 / 1 / 0), 0.1; " in line
    empty = interim_figures([], [], {}, {}, 10.0)  # interims off: zeros and Nones, still one line
    assert empty["received"] == 0 and empty["utterances_with_interims_share"] is None
    assert "None / None s" in interim_line("live K=2", empty)


class FakeReader:
    """TranscriptReader's surface that RecordCollector uses; partitions are assigned after a
    couple of polls, like a consumer joining its group."""

    def __init__(self, transcripts: list[Transcript]) -> None:
        self.transcripts, self.polls, self.closed = transcripts, 0, False
        self.consumer = self

    def assignment(self) -> list[int]:
        return [0] if self.polls >= 2 else []

    def records(self, stop, poll_s, on_error):
        while not stop():
            self.polls += 1
            if self.polls >= 3 and self.transcripts:
                yield None, self.transcripts.pop(0)
            else:
                time.sleep(0.01)

    def close(self) -> None:
        self.closed = True


def test_the_interim_collector_keeps_every_revision_of_its_calls_interims_only():
    mine, mine_again = record(["a"]), record(["a", "b"])
    reader = FakeReader([mine, record(["x"], call_id="other"), record(["a", "b"], final=True), mine_again])
    collector = RecordCollector.interims(reader, {"call"}, time.monotonic() + 30).start()
    assert collector.assigned.is_set()  # start() returned once the partitions were there
    deadline = time.monotonic() + 5
    while reader.transcripts and time.monotonic() < deadline:
        time.sleep(0.01)
    collector.stop()
    assert [a.transcript for a in collector.arrivals] == [mine, mine_again] and reader.closed
    assert not collector.thread.is_alive() and threading.active_count() >= 1


def test_partials_flag_turns_the_workers_interims_off_or_on():
    settings = Settings(partial_interval_ms=700)
    assert with_partials(settings, None) is settings
    assert worker_env(with_partials(settings, "off"))["CALLSTT_PARTIAL_INTERVAL_MS"] == "0"
    assert worker_env(with_partials(settings, "on"))["CALLSTT_PARTIAL_INTERVAL_MS"] == "700"  # the environment's
    assert with_partials(Settings(partial_interval_ms=0), "on").partial_interval_ms == PARTIALS_ON_MS
    with pytest.raises(ValueError):
        with_partials(settings, "sometimes")
