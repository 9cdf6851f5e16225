"""Fault-suite fixtures: the 3-broker cluster factory, and one summary row per scenario.

Every scenario reports calls, sentences (or utterances) expected, transcripts received, lost
(sentences whose words did not come back, whatever the ids say), duplicated and the peak RSS of
its worker processes through the `scenario` fixture; the rows are printed as
they happen (seen with -s) and again as one table at the end of the run (always seen, CI too).
Test modules use these as fixtures only (this file is imported by pytest, not by them).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from callstt.infra.local.kafka import LocalKafka
from tests.pipeline import sentences_not_heard
from tests.worker_process import WorkerProcess, read_proc_status

# -- the 3-broker cluster -----------------------------------------------------------------------


@contextmanager
def _three_brokers(name: str, port: int) -> Iterator[LocalKafka]:
    cluster = LocalKafka(name=f"test-{name}-{os.getpid()}", brokers=3, port=port)
    cluster.wipe()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.wipe()


@pytest.fixture(scope="session")
def three_brokers():
    """`with three_brokers(name, port) as cluster:` a fresh 3-broker KRaft cluster (replication 3,
    min ISR 2) on 127.0.0.1, clients on port..port+2 and controllers on port+3..port+5, data in
    .local/kafka/test-NAME-<pid>/, wiped before and after. Modules wrap it in their own fixture."""
    return _three_brokers


# -- the summary --------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    calls: int | None
    expected: int
    received: int
    lost: int
    duplicated: int
    max_rss_mb: float | None
    note: str = ""

    def line(self) -> str:
        calls = "-" if self.calls is None else str(self.calls)
        rss = "-" if self.max_rss_mb is None else f"{self.max_rss_mb:.0f} MB"
        return (f"{self.scenario}: {calls} calls, {self.expected} expected, {self.received} received, "
                f"{self.lost} lost, {self.duplicated} duplicated, max worker RSS {rss}"
                + (f"; {self.note}" if self.note else ""))


ROWS: list[Row] = []
COLUMNS = ("scenario", "calls", "expected", "received", "lost", "duplicated", "max RSS", "note")


class Scenario:
    """One fault scenario's numbers. `watch(worker, ...)` follows the workers' processes (a
    restarted worker's new pid too) and keeps each one's peak RSS: VmHWM is a high-water mark,
    so sampling it every half second misses only a SIGKILLed process's last half second."""

    def __init__(self, default_name: str) -> None:
        self.default_name = default_name
        self.workers: list[WorkerProcess] = []
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sampler: threading.Thread | None = None

    def watch(self, *workers: WorkerProcess) -> "Scenario":
        with self._lock:
            self.workers += workers
        if self._sampler is None:
            self._sampler = threading.Thread(target=self._sample_until_stopped, daemon=True)
            self._sampler.start()
        return self

    def sample(self) -> None:
        with self._lock:
            # A reaped process (returncode set) is skipped: its pid may belong to another by now.
            pids = [w.process.pid for w in self.workers
                    if w.process is not None and w.process.returncode is None]
            for pid in pids:
                peak = read_proc_status(pid).get("VmHWM")  # peak RSS so far; None once gone
                if peak is not None:
                    self.peaks[pid] = max(peak, self.peaks.get(pid, 0.0))

    def _sample_until_stopped(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.5)

    @property
    def max_rss_mb(self) -> float | None:
        self.sample()
        return max(self.peaks.values(), default=None)

    def close(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()

    def report(self, received: Iterable, expected: dict[str, list[str]] | dict[str, int], *, name: str | None = None,
               calls: int | None = None, note: str = "") -> Row:
        """Count what came back of the expected calls. `expected`: call id -> the sentences it
        spoke (one utterance each), or -> a count of utterances where the test has no sentences.

        With sentences, lost counts speech: sentences whose words did not come back
        (tests/pipeline.py sentences_not_heard), whatever the ids say; with a count, expected
        (call, utterance index) pairs with no transcript. received: distinct transcript ids of
        those calls; duplicated: records beyond those. Call this before the test's asserts, so a
        failing scenario still shows its row."""
        mine = [t for t in received if t.call_id in expected]
        unique = {t.transcript_id: t for t in mine}
        by_call: dict[str, list] = {call_id: [] for call_id in expected}
        for transcript in unique.values():
            by_call[transcript.call_id].append(transcript)
        lost, total = 0, 0
        for call_id, spoken in expected.items():
            if isinstance(spoken, int):
                total += spoken
                lost += spoken - len({t.utterance_index for t in by_call[call_id] if t.utterance_index < spoken})
            else:
                total += len(spoken)
                lost += len(sentences_not_heard(spoken, by_call[call_id]))
        return self._add(Row(name or self.default_name, len(expected) if calls is None else calls, total,
                             len(unique), lost, len(mine) - len(unique), self.max_rss_mb, note))

    def add(self, name: str, *, calls: int | None, expected: int, received: int, lost: int, duplicated: int,
            note: str = "") -> Row:
        """A row counted by the test itself (e.g. Kafka records rather than transcripts)."""
        return self._add(Row(name, calls, expected, received, lost, duplicated, self.max_rss_mb, note))

    def _add(self, row: Row) -> Row:
        ROWS.append(row)
        print(row.line(), flush=True)
        return row


@pytest.fixture
def scenario(request) -> Iterator[Scenario]:
    """The test's summary row(s); named after the test unless `report(name=...)` says otherwise."""
    name = request.node.name.removeprefix("test_")
    recorder = Scenario(name)
    try:
        yield recorder
    finally:
        recorder.close()


def pytest_terminal_summary(terminalreporter) -> None:
    if not ROWS:
        return
    table = [COLUMNS] + [(row.scenario, "-" if row.calls is None else str(row.calls), str(row.expected),
                          str(row.received), str(row.lost), str(row.duplicated),
                          "-" if row.max_rss_mb is None else f"{row.max_rss_mb:.0f} MB", row.note)
                         for row in ROWS]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(COLUMNS))]
    terminalreporter.section("fault scenarios")
    for cells in table:
        terminalreporter.write_line("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip())
