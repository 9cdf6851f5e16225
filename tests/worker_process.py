"""The tests' worker harness: `streams.worker.process.WorkerSubprocess` (a `callstt worker`
subprocess with its own app id, topics, data folder and web port, killable with SIGKILL like a
real crash) plus what the tests need around it: test defaults (a 3 s idle flush, 2 threads),
the repository as working directory, a publisher and a transcript reader on its topics, with
the test's own client configuration (TLS/SASL).

    worker = WorkerProcess("127.0.0.1:9092", Path("/tmp/run")).start()   # waits for /health 200
    with worker.publisher() as publisher: ...
    transcripts = worker.transcripts(expected=3)
    worker.stop()
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from callstt.schemas.codec import AvroCodec
from callstt.schemas.records import CallSettings, Transcript
from callstt.streams.bench.subprocesses import (WorkerSubprocess, free_port, parse_metrics,  # noqa: F401
                                                read_proc_status)
from callstt.streams.client.call_settings import publish_call_settings
from callstt.streams.client.kafka import avro_codec
from callstt.streams.client.producer import CallPublisher
from callstt.streams.client.reader import TranscriptReader
from callstt.streams.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class WorkerProcess(WorkerSubprocess):
    """One `callstt worker` subprocess with its own app id, topics, data folder and web port.
    Stopping and starting it again keeps that identity (consumer group, topics, state)."""

    DEFAULT_ENV: ClassVar[dict[str, str]] = {"CALLSTT_IDLE_FLUSH_S": "3", "OMP_NUM_THREADS": "2"}

    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    client_config: dict[str, str] = field(default_factory=dict)  # TLS/SASL for the test's own clients
    cwd: Path | None = REPO_ROOT

    def settings(self) -> Settings:
        """The settings this worker reads (its broker, topics, partitions): for the test's own clients."""
        return Settings.from_env(self.env())

    def set_call_settings(self, record: CallSettings, timeout: float = 60.0) -> None:
        """Publish a call's settings and wait until the worker has applied them (its
        callstt_call_settings_total counter moved), so audio published next meets them."""
        before = self.metrics().get('callstt_call_settings_total{action="set"}', 0.0)
        publish_call_settings(self.settings(), record)
        deadline = time.monotonic() + timeout
        while self.metrics().get('callstt_call_settings_total{action="set"}', 0.0) <= before:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker did not apply the settings of {record.call_id} within {timeout}s")
            time.sleep(0.2)

    def interims(self, call_ids: set[str], idle_s: float = 2.0) -> list[Transcript]:
        """The interim transcripts of these calls on the partial topic so far, in arrival order."""
        with TranscriptReader(self.bootstrap, self.partial_topic, extra_config=self.client_config,
                              codec=self.codec()) as reader:
            return [t for t in reader.collect(idle_exit_s=idle_s) if t.call_id in call_ids]

    def codec(self) -> AvroCodec:
        """The codec this worker reads and writes with (its schema registry, if it has one)."""
        return avro_codec(self.settings())

    def publisher(self) -> CallPublisher:
        return CallPublisher(self.bootstrap, self.audio_topic, extra_config=self.client_config, codec=self.codec())

    def transcripts(self, expected: int, timeout: float = 120.0, idle_s: float = 8.0,
                    call_ids: set[str] | None = None, topic: str | None = None) -> list[Transcript]:
        """Read transcripts until `expected` distinct ids arrived (of `call_ids` only, when given:
        the topic also holds earlier tests' calls) and then `idle_s` passed quietly (so extra,
        unexpected transcripts are seen too), or `timeout`. `topic`: another topic of Transcript
        records (the partial topic), the final transcripts' by default."""
        collected: list[Transcript] = []
        reader = TranscriptReader(self.bootstrap, topic or self.transcript_topic, extra_config=self.client_config,
                                  codec=self.codec())
        deadline = time.monotonic() + timeout
        try:
            quiet_since = None
            while time.monotonic() < deadline:
                batch = list(reader.follow(idle_exit_s=1.0))
                collected += batch
                counted = {t.transcript_id for t in collected if call_ids is None or t.call_id in call_ids}
                if len(counted) >= expected:
                    if batch:
                        quiet_since = time.monotonic()
                    elif quiet_since is None:
                        quiet_since = time.monotonic()
                    elif time.monotonic() - quiet_since >= idle_s:
                        break
        finally:
            reader.close()
        return collected
