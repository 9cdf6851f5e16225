"""Toxiproxy (Shopify's TCP proxy that injects network faults, MIT licence), run locally for the
fault suite: between a worker and the broker it adds latency and jitter, limits bandwidth, resets
connections and cuts the link, as a real network does, on loopback (this kernel has no netem).

`scripts/setup` builds it once from the Go module proxy into .local/bin/toxiproxy-server
(`go install`, VERSION below). A broker started with `LocalKafka(proxied=True)` advertises the
proxy's port on its PROXIED listener, so every connection of a client bootstrapped there goes
through the proxy:

    with Toxiproxy.started(api_port) as toxiproxy:
        toxiproxy.proxy("kafka", listen=cluster.proxy_port(node), upstream=cluster.proxied_port(node))
        toxiproxy.add_toxic("kafka", "latency", latency=200, jitter=100)
        toxiproxy.set_enabled("kafka", False)   # a partition: connections closed, new ones refused
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from callstt.infra.local.kafka import REPO_ROOT

MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
VERSION = "v2.5.0"  # the newest the Go module proxy serves under the v2 module path
BINARY = REPO_ROOT / ".local" / "bin" / "toxiproxy-server"


@dataclass
class Toxiproxy:
    api_port: int
    log_file: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    @classmethod
    @contextmanager
    def started(cls, api_port: int, log_file: Path | None = None) -> Iterator["Toxiproxy"]:
        toxiproxy = cls(api_port, log_file)
        toxiproxy.start()
        try:
            yield toxiproxy
        finally:
            toxiproxy.stop()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 30.0) -> None:
        if not BINARY.exists():
            raise FileNotFoundError(f"{BINARY} is missing: scripts/setup builds it (go install {MODULE}@{VERSION})")
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen([str(BINARY), "-host", "127.0.0.1", "-port", str(self.api_port)],
                                        stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"toxiproxy-server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.api}/version", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"toxiproxy-server did not answer on port {self.api_port} within {timeout}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def _call(self, method: str, path: str, **body) -> dict:
        response = httpx.request(method, f"{self.api}{path}", json=body or None, timeout=10)
        response.raise_for_status()
        return response.json() if response.content else {}

    def proxy(self, name: str, listen: int, upstream: int) -> None:
        """A proxy from 127.0.0.1:listen to 127.0.0.1:upstream."""
        self._call("POST", "/proxies", name=name, listen=f"127.0.0.1:{listen}", upstream=f"127.0.0.1:{upstream}",
                   enabled=True)

    def add_toxic(self, proxy: str, kind: str, stream: str = "downstream", **attributes) -> str:
        """A toxic on one direction (downstream: broker -> client); returns its name. Kinds:
        latency (latency, jitter ms), bandwidth (rate KB/s), reset_peer (timeout ms: connections
        reset after it), timeout (timeout ms: data stops, connections closed after it, 0 never)."""
        name = f"{kind}_{stream}"
        self._call("POST", f"/proxies/{proxy}/toxics", name=name, type=kind, stream=stream, toxicity=1.0,
                   attributes=attributes)
        return name

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        """Disabled: every connection through the proxy is closed and new ones are refused."""
        self._call("POST", f"/proxies/{proxy}", enabled=enabled)
