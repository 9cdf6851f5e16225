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

`callstt tail --partials` follows the partial topic too (a TranscriptTail over both topics):
`InterimBoard` decides which interims are still worth showing (the latest revision of each
utterance whose final has not come), `show_live` draws them in place on a terminal (rich),
`plain_lines` writes them as lines when the output is piped.

`callstt tail --translations` follows the translation topic instead (a TranscriptTail that
decodes Translation records; `format_translation` writes each as a line), and `callstt tail
--speech` the speech topic: `spoken_utterances` sums each translated utterance's synthesized
chunks (a repeated chunk counted once) and `format_spoken` writes the sum as a line.

    with TranscriptTail("127.0.0.1:9092", "callstt.transcripts", start=parse_since("10m")) as tail:
        for transcript in tail.follow(idle_exit_s=30):
            print(transcript.text)
"""

from __future__ import annotations

import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, TopicPartition
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from callstt.schemas.codec import AvroCodec
from callstt.schemas.errors import CallsttError
from callstt.schemas.records import AudioChunk, Transcript, Translation, TranslationStatus, spoken_utterance
from callstt.streams.client.publishing import ClientErrors, PublishError, check_topic
from callstt.streams.client.reader import TranscriptReader, topic_list

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
    answer within `timeout` s or the topic (or one of several: `topic` may be a list) does not exist.
    `decode`: how a record's value becomes what `follow` yields (default: a Transcript;
    `codec.decode_translation`, `codec.decode_chunk` for the other topics).
    """

    def __init__(self, bootstrap_servers: str, topic: str | Sequence[str], start: str | datetime = "end",
                 codec: AvroCodec | None = None, timeout: float = 10.0,
                 extra_config: dict[str, Any] | None = None, decode: Callable[[bytes], Any] | None = None) -> None:
        # Not TranscriptReader.__init__: that subscribes at once with a fixed configuration; here the
        # client must be quiet and the subscription needs an on_assign callback for the time seek.
        if isinstance(start, str) and start not in ("beginning", "end"):
            raise ValueError(f"start must be 'beginning', 'end' or a datetime, not {start!r}")
        self.codec = codec or AvroCodec()
        self._decode = decode  # TranscriptReader.decode: a Transcript unless given
        topics = topic_list(topic)
        self.topic = ", ".join(topics)  # for messages
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
            for name in topics:
                check_topic(self.consumer, bootstrap_servers, name, timeout, self.errors, "Read", extra_config)
        except PublishError as error:
            self.consumer.close()
            raise TailError(str(error)) from None
        self.consumer.subscribe(topics, on_assign=self._on_assign)

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
    """One human line: local time it was produced, call, stream, language, text; an interim's
    text is marked `~` (it will be replaced)."""
    moment = datetime.fromtimestamp(transcript.produced_ts_ms / 1000).strftime("%Y-%m-%d %H:%M:%S")
    text = " ".join(transcript.text.split())
    if not transcript.is_final:
        text = f"~ {text}"
    return f"{moment}  {transcript.call_id}  {transcript.stream_id}  {transcript.language}  {text}"


# --- translations and speech: `callstt tail --translations | --speech` --------------------------

def format_translation(translation: Translation) -> str:
    """One human line: local time it was produced, call, stream, utterance, language pair, text;
    a translation that is not a plain OK says what it is (`[passthrough]`, `[unsupported_pair]`:
    no text, no backend covers the pair)."""
    moment = datetime.fromtimestamp(translation.produced_ts_ms / 1000).strftime("%Y-%m-%d %H:%M:%S")
    text = " ".join(translation.text.split())
    if translation.status is not TranslationStatus.OK:
        text = f"[{translation.status.value.lower()}] {text}".rstrip()
    return (f"{moment}  {translation.call_id}  {translation.stream_id}  #{translation.utterance_index}  "
            f"{translation.source_language}->{translation.target_language}  {text}")


@dataclass(slots=True)
class SpokenUtterance:
    """The synthesized speech of one translated utterance so far: its chunks (each sequence number
    once) and their audio's length."""

    call_id: str
    stream_id: str  # the translated leg: `caller>pt`
    utterance_index: int
    language: str | None = None
    seqs: set[int] = field(default_factory=set)
    seconds: float = 0.0

    def add(self, chunk: AudioChunk) -> None:
        if chunk.seq not in self.seqs:  # a repeat (after a speaker's crash) is the same chunk
            self.seqs.add(chunk.seq)
            self.seconds += chunk.duration_ms / 1000

    @property
    def chunks(self) -> int:
        return len(self.seqs)

    def to_dict(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "stream_id": self.stream_id, "utterance_index": self.utterance_index,
                "language": self.language, "chunks": self.chunks, "seconds": round(self.seconds, 3)}


def spoken_utterances(chunks: Iterable[AudioChunk]) -> Iterator[SpokenUtterance]:
    """The speech chunks summed per translated utterance (schemas/records.py spoken_utterance).
    An utterance is yielded once its leg's next utterance starts (the speaker finishes one before
    the next), the rest when `chunks` ends, in the order they started."""
    open_: dict[tuple[str, str], SpokenUtterance] = {}  # per leg: the utterance being spoken
    finished: dict[tuple[str, str], int] = {}  # per leg: the last utterance yielded (a late repeat is not news)
    for chunk in chunks:
        call_id, stream_id, index = spoken_utterance(chunk)
        leg = (call_id, stream_id)
        if index <= finished.get(leg, -1):
            continue
        current = open_.get(leg)
        if current is not None and current.utterance_index != index:
            finished[leg] = current.utterance_index
            yield open_.pop(leg)
            current = None
        if current is None:
            current = open_[leg] = SpokenUtterance(chunk.call_id, chunk.stream_id, index, chunk.language)
        current.add(chunk)
    yield from open_.values()


def format_spoken(utterance: SpokenUtterance) -> str:
    """One line: call, leg, utterance, chunks and seconds of audio."""
    return (f"{utterance.call_id}  {utterance.stream_id}  #{utterance.utterance_index}  "
            f"{utterance.chunks} chunk{'' if utterance.chunks == 1 else 's'}  {utterance.seconds:.2f} s")


# --- interims: `callstt tail --partials` ---------------------------------------------------------

def split_stable(text: str, stable_text: str) -> tuple[str, str]:
    """An interim's text as (its stable leading words, the rest, which later interims may change),
    whitespace normalised. `text` starts with `stable_text` (both are joined from the same words),
    so the stable part is counted in words rather than compared character by character."""
    words, stable = text.split(), len(stable_text.split())
    return " ".join(words[:stable]), " ".join(words[stable:])


@dataclass(frozen=True, slots=True)
class OpenUtterance:
    """The latest interim of one utterance whose final has not been seen: one line of the live view."""

    call_id: str
    stream_id: str
    utterance_index: int
    revision: int
    stable: str
    unstable: str


class InterimBoard:
    """Which interims `tail --partials` shows: the latest revision of each open utterance, most
    recently updated last, at most `max_open` of them (the oldest drop off, so the live view stays
    a few lines however many calls are live).

    An interim is stale, and ignored, when the board already has that revision or a later one of
    its utterance, or when a final of its stream at that utterance index or later was seen: the
    partial and transcript topics are read side by side in no set order, so an interim can arrive
    after the final that replaced it. A stream's utterances end in order, so a final also closes
    any earlier utterance of its stream left open (one whose final the guard dropped).
    """

    def __init__(self, max_open: int = 20, max_streams: int = 10_000) -> None:
        self.max_open = max_open
        self.max_streams = max_streams
        self._open: OrderedDict[tuple[str, str, int], OpenUtterance] = OrderedDict()
        self._finished: OrderedDict[tuple[str, str], int] = OrderedDict()  # stream -> highest final's index

    @property
    def open(self) -> list[OpenUtterance]:
        return list(self._open.values())

    def offer(self, transcript: Transcript) -> bool:
        """Take a record; True when it is to be shown (a final always is: it is printed)."""
        stream = (transcript.call_id, transcript.stream_id)
        if transcript.is_final:
            self._finish(stream, transcript.utterance_index)
            return True
        key = (*stream, transcript.utterance_index)
        shown = self._open.get(key)
        if self._finished.get(stream, -1) >= transcript.utterance_index or (
                shown is not None and shown.revision >= transcript.revision):
            return False
        stable, unstable = split_stable(transcript.text, transcript.stable_text)
        self._open[key] = OpenUtterance(transcript.call_id, transcript.stream_id, transcript.utterance_index,
                                        transcript.revision, stable, unstable)
        self._open.move_to_end(key)
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)
        return True

    def _finish(self, stream: tuple[str, str], index: int) -> None:
        self._finished[stream] = max(index, self._finished.get(stream, -1))
        self._finished.move_to_end(stream)
        while len(self._finished) > self.max_streams:  # bounded memory for a tail left running for days
            self._finished.popitem(last=False)
        for key in [key for key in self._open if key[:2] == stream and key[2] <= index]:
            del self._open[key]


def interim_text(utterance: OpenUtterance) -> Text:
    """One live-view line: call, stream, utterance, then the stable words plainly and the rest
    (which may still change) dimmed and in italics."""
    line = Text(f"~ {utterance.call_id}  {utterance.stream_id}  #{utterance.utterance_index}  ")
    line.append(utterance.stable)
    if utterance.stable and utterance.unstable:
        line.append(" ")
    line.append(utterance.unstable, style="dim italic")
    return line


def board_view(board: InterimBoard) -> RenderableType:
    return Group(*(interim_text(utterance) for utterance in board.open))


def show_live(transcripts: Iterable[Transcript], console: Console, board: InterimBoard | None = None) -> None:
    """The terminal view of `tail --partials`: the open utterances update in place at the bottom;
    each final is printed above them as a line of `format_transcript` and its interim line goes."""
    board = board or InterimBoard()
    # Refreshed on each change only: no refresh thread redrawing an unchanged view.
    with Live(board_view(board), console=console, auto_refresh=False) as live:
        for transcript in transcripts:
            if not board.offer(transcript):
                continue
            # The view first: printing a final redraws the view below it, already without its interim.
            live.update(board_view(board), refresh=True)
            if transcript.is_final:  # markup off: a transcript's "[...]" is text, not a style
                live.console.print(format_transcript(transcript), markup=False, highlight=False, soft_wrap=True)


def plain_lines(transcripts: Iterable[Transcript], board: InterimBoard | None = None) -> Iterator[str]:
    """`tail --partials` when stdout is not a terminal (piped, redirected): a `format_transcript`
    line per final and per interim that is not stale (those start their text with `~`)."""
    board = board or InterimBoard()
    for transcript in transcripts:
        if board.offer(transcript):
            yield format_transcript(transcript)
