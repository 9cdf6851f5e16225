"""Following the transcript topic for `callstt tail`: TranscriptReader plus a start position.

`TranscriptTail` is a `streams.client.reader.TranscriptReader` that can also

* start at a point in time (`start=datetime`): on assignment each partition is moved to
  the first record at or after it (`Consumer.offsets_for_times`);
* fail fast, with one clear line, when the broker cannot be reached or the topic does not
  exist (`TailError`), instead of polling an unreachable broker forever; librdkafka's own
  log lines are kept off stderr;
* count the idle time of `follow(idle_exit_s=...)` over the transcripts it yields, from when
  it got its partitions (a slow group join does not eat the idle window) and not while it is
  still reading older records (a long backlog of other calls does not either).

`parse_since` turns what a user types (`10m`, `2h30m`, `2024-05-01T09:00`, ...) into the
datetime to start at.

    with TranscriptTail("127.0.0.1:9092", "callstt.transcripts", start=parse_since("10m")) as tail:
        for transcript in tail.follow(idle_exit_s=30):
            print(transcript.text)
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, TopicPartition

from schemas.codec import AvroCodec
from schemas.errors import CallsttError
from schemas.records import Transcript
from streams.client.reader import TranscriptReader
from streams.client.publishing import ClientErrors, PublishError, check_topic

_UNITS = {"ms": timedelta(milliseconds=1), "s": timedelta(seconds=1), "m": timedelta(minutes=1),
          "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_RELATIVE_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_RELATIVE = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)\s*)+", re.IGNORECASE)


class TailError(CallsttError, RuntimeError):
    """The transcripts cannot be followed (broker unreachable, topic missing, consumer error)."""


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A start time: relative to `now` (`30s`, `10m`, `2h`, `1d`, `1w`, `1h30m`, `ago` allowed after it)
    or ISO-8601 (`2024-05-01`, `2024-05-01T09:00`, `2024-05-01 09:00:00+07:00`, `...Z`).

    ISO times without an offset are local time. Returns an aware datetime; raises ValueError
    with a one-line explanation.
    """
    now = now or datetime.now(timezone.utc)
    stripped = text.strip()
    relative = re.sub(r"\s+ago$", "", stripped, flags=re.IGNORECASE)
    if relative and _RELATIVE.fullmatch(relative):
        delta = sum((float(amount) * _UNITS[unit.lower()] for amount, unit in _RELATIVE_PART.findall(relative)),
                    timedelta())
        return now - delta
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use ISO-8601 (2024-05-01T09:30, 2024-05-01T02:30Z) "
                         "or a time ago (30s, 10m, 2h, 1d, 1h30m)") from None
    return moment.astimezone() if moment.tzinfo is None else moment


def to_epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class TranscriptTail(TranscriptReader):
    """A TranscriptReader with a start position and a reachability check (see the module doc).

    `start`: "beginning", "end" (only transcripts from now on) or a datetime. The consumer has
    its own throw-away group and never commits. Raises `TailError` if the broker does not
    answer within `timeout` s or the topic does not exist.
    """

    def __init__(self, bootstrap_servers: str, topic: str, start: str | datetime = "end",
                 codec: AvroCodec | None = None, timeout: float = 10.0,
                 extra_config: dict[str, Any] | None = None) -> None:
        # Not TranscriptReader.__init__: that subscribes at once with a fixed configuration; here the
        # client must be quiet and the subscription needs an on_assign callback for the time seek.
        if isinstance(start, str) and start not in ("beginning", "end"):
            raise ValueError(f"start must be 'beginning', 'end' or a datetime, not {start!r}")
        self.codec = codec or AvroCodec()
        self.topic = topic
        self.timeout = timeout
        self.start_ms = to_epoch_ms(start) if isinstance(start, datetime) else None
        self.assigned_at: float | None = None
        self.errors = ClientErrors()
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"callstt-tail-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest" if start == "beginning" else "latest",
            "enable.auto.commit": False,
            **self.errors.config(),
            **(extra_config or {}),
        })
        try:
            check_topic(self.consumer, bootstrap_servers, topic, timeout, self.errors)
        except PublishError as error:
            self.consumer.close()
            raise TailError(str(error)) from None
        self.consumer.subscribe([topic], on_assign=self._on_assign)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.start_ms is not None and partitions:
            wanted = [TopicPartition(p.topic, p.partition, self.start_ms) for p in partitions]
            # Offset of the first record at/after the time; -1 (= OFFSET_END) where there is none.
            partitions = consumer.offsets_for_times(wanted, timeout=self.timeout)
        consumer.assign(partitions)
        self.assigned_at = time.monotonic()

    def consumer_error(self, error: KafkaError) -> None:
        raise TailError(f"consuming {self.topic} failed: {error.str()}")

    def follow(self, idle_exit_s: float | None = None, call_id: str | None = None) -> Iterator[Transcript]:
        """Yield transcripts (of `call_id` only, if given) as they arrive.

        With `idle_exit_s`, stop once that long passed without yielding one. The clock starts at
        the later of this call and the partition assignment, and is held back while records
        older than this call are being read (catching up on a backlog of other calls is not
        idleness); new records of other calls do not hold it back.
        """
        started = time.monotonic()
        started_ms = time.time() * 1000
        active_at = started

        def idle() -> bool:
            return (idle_exit_s is not None
                    and time.monotonic() - max(active_at, self.assigned_at or started) >= idle_exit_s)

        def on_record(message) -> None:
            nonlocal active_at
            kind, timestamp_ms = message.timestamp()
            if kind != TIMESTAMP_NOT_AVAILABLE and timestamp_ms < started_ms:
                active_at = time.monotonic()  # still reading the backlog

        for _, transcript in self.records(stop=idle, poll_s=0.2, on_record=on_record):
            if call_id is None or transcript.call_id == call_id:
                active_at = time.monotonic()
                yield transcript


def format_transcript(transcript: Transcript) -> str:
    """One human line: local time it was produced, call, stream, language, text."""
    moment = datetime.fromtimestamp(transcript.produced_ts_ms / 1000).strftime("%Y-%m-%d %H:%M:%S")
    text = " ".join(transcript.text.split())
    if not transcript.is_final:
        text = f"(partial) {text}"
    return f"{moment}  {transcript.call_id}  {transcript.stream_id}  {transcript.language}  {text}"
