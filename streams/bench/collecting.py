"""Reading the worker's records back during a bench run: `collect` reads the transcripts through
`TranscriptReader.records`, and `RecordCollector` reads another topic alongside (the interims,
every revision, from the partial topic; the chain's translations and speech)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("callstt.bench")


@dataclass
class Arrival:
    transcript: Any  # the record: a Transcript (a Translation or an AudioChunk in the chain)
    arrived_ms: int


def _retry_unless_fatal(error) -> None:
    """collect's consumer errors: a fatal one ends the run, others are retried."""
    if error.fatal():
        raise RuntimeError(f"consuming transcripts failed: {error}")
    log.warning("transcript consumer: %s (retrying)", error)


def collect(reader, expected: int | None, deadline: float, idle_s: float,
            on_poll=None, wanted=None) -> list[Arrival]:
    """Transcripts (distinct ids) until `expected` arrived (None: no count, as when an utterance may
    be cut in two), or `idle_s` without one after publishing ended (the caller passes the
    publishing flag through `on_poll`), or the deadline."""
    arrivals: dict[str, Arrival] = {}
    last_new = time.monotonic()

    def done() -> bool:  # asked before every poll
        if time.monotonic() >= deadline:
            return True
        busy = on_poll() if on_poll else False
        enough = expected is not None and len(arrivals) >= expected
        return enough or (not busy and time.monotonic() - last_new > idle_s)

    for _, transcript in reader.records(stop=done, poll_s=0.2, on_error=_retry_unless_fatal):
        arrived = int(time.time() * 1000)
        if wanted is not None and transcript.call_id not in wanted:
            continue  # an earlier section's transcript (the reader starts at the beginning)
        if transcript.transcript_id not in arrivals:
            arrivals[transcript.transcript_id] = Arrival(transcript, arrived)
            last_new = time.monotonic()
    return sorted(arrivals.values(), key=lambda a: a.arrived_ms)


class RecordCollector:
    """Every record `keep` accepts from a reader's topic, with its arrival time, read in a thread of
    its own while `collect` reads the finals: the interims of the partial topic (`collect` keeps
    one record per transcript_id, and an interim shares its final's id), the chain's translations
    and speech chunks; a poll loop of their own also keeps the arrival times honest."""

    def __init__(self, reader, keep: Callable[[Any], bool], deadline: float, name: str = "records") -> None:
        self.reader, self.keep, self.deadline = reader, keep, deadline
        self.arrivals: list[Arrival] = []
        self.assigned, self.stopped = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._read, name=name, daemon=True)

    @classmethod
    def interims(cls, reader, wanted: set[str], deadline: float) -> RecordCollector:
        """The interims (not the finals) of the `wanted` calls."""
        return cls(reader, lambda t: t.call_id in wanted and not t.is_final, deadline, name="interims")

    def _read(self) -> None:
        def done() -> bool:  # asked before every poll
            if not self.assigned.is_set() and self.reader.consumer.assignment():
                self.assigned.set()
            return self.stopped.is_set() or time.monotonic() >= self.deadline

        try:
            for _, record in self.reader.records(stop=done, poll_s=0.2, on_error=_retry_unless_fatal):
                if self.keep(record):
                    self.arrivals.append(Arrival(record, int(time.time() * 1000)))
        finally:
            self.assigned.set()  # a reader that failed must not keep start() waiting

    def start(self, timeout: float = 20.0) -> RecordCollector:
        """Start reading; returns once the consumer has its partitions (or after `timeout`), so the
        first records are not timed late by the consumer group's join."""
        self.thread.start()
        if not self.assigned.wait(timeout):
            log.warning("%s reader: no partitions after %.0f s; early ones may be timed late", self.thread.name, timeout)
        return self

    def stop(self) -> None:
        """Stop once the finals are in (an utterance's interims all come before its final)."""
        self.stopped.set()
        self.thread.join(timeout=10.0)
        self.reader.close()
