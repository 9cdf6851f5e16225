"""A `callstt worker` as a subprocess on a given broker: what the tests, the fault suite and the
benchmark run, each worker with its own app id, topics, data folder and web port (so runs
never see each other's records), killable with SIGKILL like a real crash.

    worker = WorkerProcess("127.0.0.1:9092", Path("/tmp/run")).start()   # waits for /health 200
    with worker.publisher() as publisher: ...
    transcripts = worker.transcripts(expected=3)
    worker.stop()
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from schemas.records import Transcript
from streams.client.reader import TranscriptReader
from streams.client.producer import CallPublisher

REPO_ROOT = Path(__file__).resolve().parent.parent


def read_proc_status(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM (peak RSS) of a process, in MB (empty if it is gone)."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, amount = line.split(":", 1)
                values[name] = round(int(amount.split()[0]) / 1024, 1)
    except OSError:
        pass
    return values


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{label="v"}': value} (samples only)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class WorkerProcess:
    """One `callstt worker` subprocess with its own app id, topics, data folder and web port.
    Stopping and starting it again keeps that identity (consumer group, topics, state)."""

    bootstrap: str
    data_root: Path
    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    extra_env: dict[str, str] = field(default_factory=dict)
    client_config: dict[str, str] = field(default_factory=dict)  # TLS/SASL for the test's own clients
    process: subprocess.Popen | None = None
    web_port: int = field(default_factory=free_port)
    ready_after_s: float | None = None  # from the last start to /health 200

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
        self.data_root.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=self.env(),
                                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                            start_new_session=True)  # its own process group: kill() takes all
        self.wait_ready(timeout)
        self.ready_after_s = time.monotonic() - started
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
            time.sleep(0.1)
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

    def metrics(self) -> dict[str, float]:
        """The worker's /metrics samples, `{'name{label="v"}': value}`."""
        return parse_metrics(httpx.get(f"http://127.0.0.1:{self.web_port}/metrics", timeout=5).text)

    def memory(self) -> dict[str, float]:
        """VmRSS and VmHWM (peak RSS) in MB; empty once the process is gone."""
        return read_proc_status(self.process.pid) if self.process and self.process.poll() is None else {}

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
