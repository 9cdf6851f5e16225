"""The pure parts of `callstt publish` and `callstt tail`: inputs, call ids, interleaving, time parsing,
the tail's idle clock and the transcript read loop (over a scripted consumer, no broker)."""

from __future__ import annotations

import re
import time
import wave
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pytest
from confluent_kafka import KafkaError

from callstt.schemas.codec import DecodeError
from callstt.schemas.records import Transcript
from callstt.streams.client.producer import ChunkPlan, iter_chunks
from callstt.streams.client.publishing import (CallInput, CallJob, DeliveryTracker, InputError, call_ids, list_inputs,
                                               load_inputs, new_results, plan_calls, send_calls)
from callstt.streams.client.reader import TranscriptReader
from callstt.streams.client.tailing import TailError, TranscriptTail, format_transcript, parse_since

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


# --- parse_since -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, ago", [
    ("10m", timedelta(minutes=10)),
    ("2h", timedelta(hours=2)),
    ("30s", timedelta(seconds=30)),
    ("1d", timedelta(days=1)),
    ("1w", timedelta(weeks=1)),
    ("1h30m", timedelta(hours=1, minutes=30)),
    ("1h 30m", timedelta(hours=1, minutes=30)),
    ("1.5h", timedelta(minutes=90)),
    ("250ms", timedelta(milliseconds=250)),
    ("10M", timedelta(minutes=10)),
    (" 10m ago ", timedelta(minutes=10)),
])
def test_relative_times_count_back_from_now(text, ago):
    assert parse_since(text, now=NOW) == NOW - ago


@pytest.mark.parametrize("text, expected", [
    ("2024-05-01T09:30:00Z", datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc)),
    ("2024-05-01T09:30:00+07:00", datetime(2024, 5, 1, 2, 30, tzinfo=timezone.utc)),
    ("2024-05-01 09:30+00:00", datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc)),
])
def test_iso_times_with_an_offset(text, expected):
    assert parse_since(text, now=NOW) == expected


def test_iso_times_without_an_offset_are_local_time():
    parsed = parse_since("2024-05-01T09:30")
    assert parsed.tzinfo is not None
    assert parsed == datetime(2024, 5, 1, 9, 30).astimezone()
    assert parse_since("2024-05-01") == datetime(2024, 5, 1).astimezone()


@pytest.mark.parametrize("text", ["", "yesterday", "10", "10x", "m10", "-10m", "2024-13-01"])
def test_what_is_not_a_time_is_a_one_line_value_error(text):
    with pytest.raises(ValueError) as error:
        parse_since(text, now=NOW)
    assert "\n" not in str(error.value) and "ISO-8601" in str(error.value)


# --- list_inputs / load_inputs ------------------------------------------------------------------

def write_wav(path, seconds=0.5, rate=16000):
    samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def test_a_directory_gives_its_audio_files_sorted(tmp_path):
    for name in ["b.wav", "A.MP3", "c.flac", "notes.txt", ".hidden.wav", "d.ogg"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.wav").write_bytes(b"x")
    assert [p.name for p in list_inputs([tmp_path])] == ["A.MP3", "b.wav", "c.flac", "d.ogg"]


def test_files_are_taken_as_given_in_argument_order(tmp_path):
    first, second = tmp_path / "z.wav", tmp_path / "recording.bin"
    first.write_bytes(b"x")
    second.write_bytes(b"x")
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "a.wav").write_bytes(b"x")
    assert list_inputs([first, folder, second]) == [first, folder / "a.wav", second]


def test_a_missing_path_or_an_empty_directory_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file or directory"):
        list_inputs([tmp_path / "missing.wav"])
    (tmp_path / "readme.txt").write_text("no audio here")
    with pytest.raises(InputError, match="no audio files in directory"):
        list_inputs([tmp_path])


def test_load_inputs_resamples_to_the_plan_rate(tmp_path):
    write_wav(tmp_path / "tone.wav", seconds=0.5, rate=16000)
    [loaded] = load_inputs([tmp_path], sample_rate=8000)
    assert loaded.name == "tone.wav" and loaded.sample_rate == 8000
    assert loaded.samples.dtype == np.float32
    assert loaded.seconds == pytest.approx(0.5, abs=0.01)


def test_an_unreadable_file_is_a_one_line_input_error(tmp_path):
    (tmp_path / "broken.wav").write_text("not audio\nat all")
    with pytest.raises(InputError) as error:
        load_inputs([tmp_path / "broken.wav"])
    assert "broken.wav" in str(error.value) and "\n" not in str(error.value)


# --- call ids and plans ---------------------------------------------------------------------------

def test_call_ids():
    assert call_ids(1, "x") == ["x"]
    assert call_ids(3, "x") == ["x-1", "x-2", "x-3"]
    assert re.fullmatch(r"call-[0-9a-f]{8}", call_ids(1)[0])
    generated = call_ids(2)
    assert generated[0][:-2] == generated[1][:-2] and generated[0].endswith("-1") and generated[1].endswith("-2")
    assert call_ids(1) != call_ids(1)


def source(name, seconds=0.1, rate=8000):
    return CallInput(name, np.zeros(int(seconds * rate), dtype=np.float32), rate)


def test_plan_calls_cycles_over_the_inputs():
    a, b = source("a"), source("b")
    jobs = plan_calls([a, b], calls=5, call_id="c", stream_id="agent", language="vi")
    assert [job.call_id for job in jobs] == ["c-1", "c-2", "c-3", "c-4", "c-5"]
    assert [job.input.name for job in jobs] == ["a", "b", "a", "b", "a"]
    assert {job.stream_id for job in jobs} == {"agent"} and {job.language for job in jobs} == {"vi"}
    assert [job.call_id for job in plan_calls([a, b], call_id="c")] == ["c-1", "c-2"]
    assert [job.call_id for job in plan_calls([a], call_id="c")] == ["c"]
    with pytest.raises(InputError):
        plan_calls([])


@pytest.mark.parametrize("seconds, chunk_ms", [(0.1, 20), (0.105, 20), (0.0, 20), (1.0, 30)])
def test_chunk_count_matches_iter_chunks(seconds, chunk_ms):
    plan = ChunkPlan(8000, "MULAW", chunk_ms)
    job = CallJob("c", "caller", source("a", seconds))
    assert job.chunk_count(plan) == len(list(iter_chunks(job.input.samples, "c", "caller", plan, 0)))


class FakePublisher:
    def __init__(self):
        self.sent = []

    def send(self, chunk):
        self.sent.append(chunk)


def test_calls_are_interleaved_and_counted():
    plan = ChunkPlan(8000, "PCM_S16LE", 20)
    jobs = plan_calls([source("long", 0.1), source("short", 0.04)], call_id="c", language="en")
    publisher = FakePublisher()
    seen = []
    results = send_calls(publisher, jobs, plan, on_chunk=lambda job: seen.append(job.call_id), start_ms=1000)
    order = [(chunk.call_id, chunk.seq) for chunk in publisher.sent]
    assert order == [("c-1", 0), ("c-2", 0), ("c-1", 1), ("c-2", 1), ("c-1", 2), ("c-1", 3), ("c-1", 4)]
    assert seen == [call for call, _ in order]
    assert [(r.call_id, r.chunks, r.source) for r in results] == [("c-1", 5, "long"), ("c-2", 2, "short")]
    assert [r.seconds for r in results] == pytest.approx([0.1, 0.04])
    ends = [chunk for chunk in publisher.sent if chunk.end_of_stream]
    assert [(chunk.call_id, chunk.seq) for chunk in ends] == [("c-2", 1), ("c-1", 4)]
    assert {chunk.language for chunk in publisher.sent} == {"en"}
    assert {chunk.capture_ts_ms for chunk in publisher.sent if chunk.seq == 0} == {1000}


def test_realtime_paces_each_step_to_the_chunk_duration():
    plan = ChunkPlan(8000, "MULAW", 100)
    delays = []
    send_calls(FakePublisher(), plan_calls([source("a", 0.5)], calls=2), plan, realtime=True, sleep=delays.append)
    assert len(delays) == 4  # steps 1..4 wait; step 0 goes at once
    assert all(0.05 < delay <= 0.1 * (index + 1) for index, delay in enumerate(delays))


def test_a_sample_rate_mismatch_is_refused():
    with pytest.raises(ValueError, match="Hz"):
        send_calls(FakePublisher(), plan_calls([source("a", rate=8000)]), ChunkPlan(16000))


class FakeMessage:
    def __init__(self, key):
        self._key = key

    def key(self):
        return self._key


class FakeError:
    def str(self):
        return "Broker: Message size too large"


def test_delivery_tracker_counts_per_call():
    jobs = plan_calls([source("a")], calls=2, call_id="c")
    results = new_results(jobs)
    tracker = DeliveryTracker({result.call_id: result for result in results})
    tracker(None, FakeMessage(b"c-1"))
    tracker(None, FakeMessage(b"c-2"))
    tracker(FakeError(), FakeMessage(b"c-2"))
    assert (tracker.acknowledged, tracker.failed) == (2, 1)
    assert [(r.acknowledged, r.failed, r.first_error) for r in results] == [
        (1, 0, ""), (1, 1, "Broker: Message size too large")]


def test_format_transcript_is_one_line_in_local_time():
    produced = datetime(2024, 5, 1, 9, 30, 5).astimezone()
    transcript = Transcript(transcript_id="t", call_id="call-1", stream_id="caller", utterance_index=0,
                            text=" Hello\nthere ", language="en", language_probability=1.0, start_ms=0, end_ms=1,
                            model_name="base", backend="faster-whisper", avg_logprob=0.0, no_speech_prob=0.0,
                            last_audio_capture_ts_ms=0, last_audio_received_ts_ms=0,
                            produced_ts_ms=int(produced.timestamp() * 1000))
    assert format_transcript(transcript) == "2024-05-01 09:30:05  call-1  caller  en  Hello there"


# --- TranscriptTail.follow's idle clock ----------------------------------------------------------

class ScriptedMessage:
    def __init__(self, call_id, timestamp_ms):
        self.call_id, self.timestamp_ms = call_id, timestamp_ms

    def error(self):
        return None

    def timestamp(self):
        return (1, self.timestamp_ms)  # TIMESTAMP_CREATE_TIME

    def value(self):
        return self.call_id


class ScriptedConsumer:
    """Hands out the scripted messages one per poll, each after `delay` s; then nothing."""

    def __init__(self, messages, delay):
        self.messages, self.delay = list(messages), delay

    def poll(self, timeout):
        time.sleep(self.delay if self.messages else min(timeout, 0.02))
        return self.messages.pop(0) if self.messages else None


class CallIdCodec:
    def decode_transcript(self, value):
        return SimpleNamespace(call_id=value)


def scripted_tail(messages, delay):
    tail = TranscriptTail.__new__(TranscriptTail)  # no broker: just the follow loop over a scripted consumer
    tail.consumer, tail.codec = ScriptedConsumer(messages, delay), CallIdCodec()
    tail.topic, tail.assigned_at = "t", None
    return tail


def test_reading_an_old_backlog_of_other_calls_is_not_idleness():
    old = int(time.time() * 1000) - 60_000
    backlog = [ScriptedMessage(f"other-{index}", old) for index in range(6)] + [ScriptedMessage("mine", old)]
    tail = scripted_tail(backlog, delay=0.05)
    found = [t.call_id for t in tail.follow(idle_exit_s=0.2, call_id="mine")]
    assert found == ["mine"]  # 0.35 s of backlog before it, longer than the idle time
    assert tail.consumer.messages == []  # read to the end, then left after the idle time


def test_new_records_of_other_calls_do_not_hold_the_idle_clock():
    future = int(time.time() * 1000) + 60_000
    live = [ScriptedMessage(f"other-{index}", future) for index in range(30)]
    tail = scripted_tail(live, delay=0.05)
    assert list(tail.follow(idle_exit_s=0.3, call_id="mine")) == []
    # It left after the idle time while other calls' records were still coming (1.5 s of them):
    # had they held the clock, it would have read all 30 first.
    assert 0 < len(tail.consumer.messages) < 30


class ScriptedError:
    def __init__(self, code, fatal=False):
        self._code, self._fatal = code, fatal

    def code(self):
        return self._code

    def fatal(self):
        return self._fatal

    def str(self):
        return "scripted failure"

    def __str__(self):
        return "scripted failure"


class ErrorMessage(ScriptedMessage):
    def __init__(self, error):
        super().__init__("", 0)
        self._error = error

    def error(self):
        return self._error


class PickyCodec(CallIdCodec):
    def decode_transcript(self, value):
        if value == "garbage":
            raise DecodeError("not_avro")
        return super().decode_transcript(value)


def test_the_read_loop_skips_partition_ends_and_undecodable_records_and_raises_on_errors():
    now = int(time.time() * 1000)
    script = [ErrorMessage(ScriptedError(KafkaError._PARTITION_EOF)), ScriptedMessage("garbage", now),
              ScriptedMessage("mine", now), ErrorMessage(ScriptedError(KafkaError._TRANSPORT)),
              ScriptedMessage("after", now)]
    tail = scripted_tail(script, delay=0.0)
    tail.codec = PickyCodec()
    found = []
    with pytest.raises(TailError, match="consuming t failed: scripted failure"):
        for transcript in tail.follow(idle_exit_s=2.0):
            found.append(transcript.call_id)
    assert found == ["mine"]


def test_the_bench_collector_retries_errors_that_are_not_fatal_and_keeps_distinct_wanted_transcripts():
    from callstt.streams.bench.collecting import collect

    def transcript(call_id, transcript_id):
        return SimpleNamespace(call_id=call_id, transcript_id=transcript_id)

    class Codec:
        def decode_transcript(self, value):
            return value

    reader = TranscriptReader.__new__(TranscriptReader)  # the shared loop over a scripted consumer
    reader.codec = Codec()
    reader.consumer = ScriptedConsumer([
        ScriptedMessage(transcript("old", "o1"), 0), ErrorMessage(ScriptedError(KafkaError._TRANSPORT)),
        ScriptedMessage(transcript("mine", "m1"), 0), ScriptedMessage(transcript("mine", "m1"), 0),
        ScriptedMessage(transcript("mine", "m2"), 0)], delay=0.0)
    arrivals = collect(reader, expected=2, deadline=time.monotonic() + 5, idle_s=1.0, wanted={"mine"})
    assert [a.transcript.transcript_id for a in arrivals] == ["m1", "m2"]

    reader.consumer = ScriptedConsumer([ErrorMessage(ScriptedError(KafkaError._FATAL, fatal=True))], delay=0.0)
    with pytest.raises(RuntimeError, match="consuming transcripts failed"):
        collect(reader, expected=1, deadline=time.monotonic() + 5, idle_s=1.0)
