"""A `callstt worker` as a subprocess on a given broker: what the benchmark runs (and what the
tests' harness, tests/worker_process.py, builds on). Each worker has its own app id, topics,
data folder and web port (so runs never see each other's records), and its own process group,
so it can be stopped, or killed with SIGKILL like a real crash, with all its children.

    worker = WorkerSubprocess("127.0.0.1:9092", Path("/tmp/run"), extra_env={"MODEL_SIZE": "base"})
    worker.start(timeout=180)            # waits for /health 200
    worker.metrics()                     # {'callstt_model_load_seconds': 1.9, ...}
    worker.memory()                      # {'VmRSS': 612.3, 'VmHWM': 640.0} (MB)
    worker.stop()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from callstt.infra.local.ports import free_ports
from callstt.streams.agents import AGENTS
from callstt.streams.settings import prefixed_topics, setting_variable
from callstt.streams.web_auth import read_tokens


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
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def free_port() -> int:
    return free_ports(1)


@dataclass
class WorkerSubprocess:
    """One `callstt worker` subprocess with its own app id (`name`), topics, data folder and web
    port. Stopping and starting it again keeps that identity (consumer group, topics, state).

    Its environment is this process's, then the worker's identity (broker, app id, topics, data
    folder, web port, 3 partitions), then `DEFAULT_ENV` (a subclass's defaults), then `extra_env`.
    """

    DEFAULT_ENV: ClassVar[dict[str, str]] = {}

    bootstrap: str
    data_root: Path
    name: str = field(default_factory=lambda: f"w{uuid.uuid4().hex[:8]}")
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    web_port: int = field(default_factory=free_port)
    ready_after_s: float | None = None  # from the last start to /health 200
    cwd: Path | None = None  # the worker's working directory (None: this process's)
    command: str = "worker"  # the callstt command it runs: "worker" (transcription), "translator", "speaker"
    cli_module: str = "callstt.streams.cli"  # a previous version's tree (cwd) has its own: "streams.cli"

    def __getattr__(self, name: str) -> str:
        """Its topic names (`audio_topic`, `transcript_topic`, ...: every topic setting) under its
        own name instead of "callstt": `w1a2b3c4d.audio`."""
        topics = prefixed_topics(self.__dict__.get("name", ""))
        if name not in topics:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return topics[name][1]

    @property
    def log_file(self) -> Path:
        return self.data_root / f"{self.name}.log"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CALLSTT_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "CALLSTT_APP_ID": self.name,
            **dict(prefixed_topics(self.name).values()),
            "CALLSTT_TOPIC_PARTITIONS": "3",
            "CALLSTT_DATA_DIR": str(self.data_root / self.name),
            "CALLSTT_WEB_PORT": str(self.web_port),
            **{setting_variable(agent.web_port): str(self.web_port) for agent in AGENTS},  # whichever it runs
            **self.DEFAULT_ENV,
            **self.extra_env,
        }

    @property
    def web_token(self) -> str:
        """A token its pages with call content accept: its tokens file's first, else the one it
        made in its data folder (streams/web_auth.py; it binds 127.0.0.1)."""
        env = self.env()
        path = Path(env.get("CALLSTT_WEB_TOKENS_FILE") or Path(env["CALLSTT_DATA_DIR"]) / "web-token")
        return read_tokens(path)[0]

    def web_headers(self) -> dict[str, str]:
        """Headers that sign a request to its pages with call content in."""
        return {"Authorization": f"Bearer {self.web_token}"}

    def start(self, timeout: float = 120.0):
        """Start the worker and wait until it is ready (see `wait_ready`); returns self."""
        self.data_root.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", self.cli_module, self.command], env=self.env(),
                                            stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd,
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
        """SIGTERM to the worker's process group; SIGKILL if it has not exited within 30 s."""
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

    def stages(self, calls: set[str] | None = None) -> dict:
        """Its /stages page (streams/core/stages.py): the recent finals' stages, of `calls` when
        given, and its model calls."""
        return httpx.get(f"http://127.0.0.1:{self.web_port}/stages", params=[("call", c) for c in sorted(calls or ())],
                         headers=self.web_headers(), timeout=10).json()

    def memory(self) -> dict[str, float]:
        """VmRSS and VmHWM (peak RSS) in MB; empty once the process is gone."""
        return read_proc_status(self.process.pid) if self.process and self.process.poll() is None else {}
