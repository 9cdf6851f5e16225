"""Test helpers for the real pipeline: a `callstt worker` process on the test broker, and calls.

Each worker gets its own app id, topics, data folder and web port, so tests never see
each other's records; the worker is a real subprocess, so tests can SIGKILL it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from schemas.records import Transcript
from streams.consumer import TranscriptReader
from streams.producer import CallPublisher

REPO_ROOT = Path(__file__).resolve().parent.parent
CALLSTT = str(Path(sys.executable).parent / "callstt")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class WorkerProcess:
    """One `callstt worker` subprocess; `restart()` keeps its identity (group, topics, data)."""

    bootstrap: str
    data_root: Path
    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    extra_env: dict[str, str] = field(default_factory=dict)
    client_config: dict[str, str] = field(default_factory=dict)  # TLS/SASL for the test's own clients
    process: subprocess.Popen | None = None
    web_port: int = field(default_factory=free_port)

    @property
    def audio_topic(self) -> str:
        return f"{self.name}.audio"

    @property
    def transcript_topic(self) -> str:
        return f"{self.name}.transcripts"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.name}.dead-letter"

    @property
    def log_file(self) -> Path:
        return self.data_root / f"{self.name}.log"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CALLSTT_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "CALLSTT_APP_ID": self.name,
            "CALLSTT_AUDIO_TOPIC": self.audio_topic,
            "CALLSTT_TRANSCRIPT_TOPIC": self.transcript_topic,
            "CALLSTT_DEAD_LETTER_TOPIC": self.dead_letter_topic,
            "CALLSTT_TOPIC_PARTITIONS": "3",
            "CALLSTT_DATA_DIR": str(self.data_root / self.name),
            "CALLSTT_WEB_PORT": str(self.web_port),
            "CALLSTT_IDLE_FLUSH_S": "3",
            "OMP_NUM_THREADS": "2",
            **self.extra_env,
        }

    def start(self, timeout: float = 120.0) -> "WorkerProcess":
        log = open(self.log_file, "ab")
        self.process = subprocess.Popen([CALLSTT, "worker"], env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                        cwd=REPO_ROOT, start_new_session=True)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Ready = /health answers 200: models loaded and partitions of the audio topic assigned."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.web_port}/health", timeout=2).status_code == 200:
                    return  # models loaded and audio partitions assigned
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"worker not ready within {timeout}s:\n{self.log_tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def publisher(self) -> CallPublisher:
        return CallPublisher(self.bootstrap, self.audio_topic, extra_config=self.client_config)

    def transcripts(self, expected: int, timeout: float = 120.0, idle_s: float = 8.0,
                    call_ids: set[str] | None = None) -> list[Transcript]:
        """Read transcripts until `expected` distinct ids arrived (of `call_ids` only, when given:
        the topic also holds earlier tests' calls) and then `idle_s` passed quietly (so extra,
        unexpected transcripts are seen too), or `timeout`."""
        collected: list[Transcript] = []
        reader = TranscriptReader(self.bootstrap, self.transcript_topic, extra_config=self.client_config)
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


def by_call(transcripts: list[Transcript]) -> dict[str, list[Transcript]]:
    """Transcripts per call, duplicates dropped by transcript_id, in utterance order."""
    calls: dict[str, dict[str, Transcript]] = defaultdict(dict)
    for transcript in transcripts:
        calls[transcript.call_id].setdefault(transcript.transcript_id, transcript)
    return {call: sorted(items.values(), key=lambda t: (t.stream_id, t.utterance_index))
            for call, items in calls.items()}
