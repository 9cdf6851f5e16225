"""A real Apicurio Schema Registry on loopback, without Docker.

Like infra/local/kafka.py does for Kafka: fetches Apicurio Registry's Quarkus
distribution (`io.apicurio:apicurio-registry-app:VERSION:tar.gz:all`) from Maven
Central through Maven, unpacks it once under `.local/apicurio/` (ignored by git),
runs it as `java -jar` on its runner jar (`quarkus-run.jar` in 3.x, the legacy
`apicurio-registry-app-VERSION-runner.jar` beside `lib/` in 2.6.x) on 127.0.0.1
with in-memory storage, waits
until its Confluent-compatible API (`/apis/ccompat/v7`) answers, and stops it by pid.
The codec's registry mode and the integration tests talk to that ccompat API with
confluent-kafka's SchemaRegistryClient. Its command line is scripts/schema_registry.py.

    from callstt.infra.local.registry import LocalSchemaRegistry
    url = LocalSchemaRegistry(port=18081).start()   # http://127.0.0.1:18081/apis/ccompat/v7

Storage is in memory: every start is an empty registry (ids start again from 1).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from callstt.infra.local import running_pid
from callstt.schemas.errors import CallsttError

REPO_ROOT = Path(__file__).resolve().parents[2]  # infra/local/registry.py -> the repository
LOCAL_ROOT = REPO_ROOT / ".local" / "apicurio"

# 2.6.x is the last line whose app ships as one Quarkus tarball that runs on Java 17
# with the in-memory store by default, and it serves the Confluent API at ccompat/v7.
VERSION = "2.6.13.Final"
ARTIFACT = f"io.apicurio:apicurio-registry-app:{VERSION}:tar.gz:all"
DEFAULT_PORT = 8081
CCOMPAT_PATH = "/apis/ccompat/v7"

JVM_OPTS = ["-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-Djava.awt.headless=true"]


class RegistryError(CallsttError, RuntimeError):
    """The local schema registry could not be fetched, started or reached."""


def say(message: str) -> None:
    print(f"[apicurio] {message}", file=sys.stderr, flush=True)


def _dist_root(version: str) -> Path:
    return LOCAL_ROOT / version


def _find_runner(root: Path) -> Path | None:
    """The jar to run: quarkus-run.jar (fast-jar layout, 3.x) or *-runner.jar (legacy-jar, 2.6.x)."""
    for pattern in ("quarkus-run.jar", "*-runner.jar"):
        runners = sorted(root.rglob(pattern), key=lambda path: len(path.parts))
        if runners:
            return runners[0]
    return None


def fetch_dist(version: str = VERSION) -> Path:
    """Download and unpack the registry once; return the path of the runner jar.

    Maven caches the tarball in ~/.m2 and copies it to .local/apicurio/; the unpacked
    tree (with a marker written last) lets later runs skip Maven entirely, so a
    second run downloads and resolves nothing.
    """
    root = _dist_root(version)
    marker = root / ".unpacked"
    if marker.exists():
        runner = _find_runner(root / "dist")
        if runner is not None:
            return runner
    if shutil.which("mvn") is None:
        raise RegistryError("Maven (mvn) is not installed: install it (apt-get install maven) and retry")
    artifact = f"io.apicurio:apicurio-registry-app:{version}:tar.gz:all"
    download = root / "download"
    tarball = download / f"apicurio-registry-app-{version}-all.tar.gz"
    if not tarball.exists():
        say(f"fetching {artifact} from Maven Central (first run only, about 140 MB)...")
        shutil.rmtree(download, ignore_errors=True)
        download.mkdir(parents=True, exist_ok=True)
        command = ["mvn", "-B", "-q", "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy",
                   f"-Dartifact={artifact}", f"-DoutputDirectory={download}", "-Dmdep.useBaseVersion=true"]
        result = subprocess.run(command, capture_output=True, text=True, cwd=LOCAL_ROOT.parent)
        if result.returncode != 0:
            raise RegistryError(f"mvn dependency:copy failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
        found = sorted(download.glob("*.tar.gz"))
        if not found:
            raise RegistryError(f"mvn dependency:copy wrote no tarball into {download}")
        if found[0] != tarball:
            found[0].rename(tarball)
    dist = root / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    dist.mkdir(parents=True)
    say(f"unpacking {tarball.name}...")
    with tarfile.open(tarball) as archive:
        archive.extractall(dist, filter="data")
    runner = _find_runner(dist)
    if runner is None:
        raise RegistryError(f"no quarkus-run.jar nor *-runner.jar in {tarball.name}")
    marker.write_text(version)
    # Maven keeps its own copy in ~/.m2; the unpacked tree is all that later runs read.
    shutil.rmtree(download, ignore_errors=True)
    return runner


@dataclass
class LocalSchemaRegistry:
    """One Apicurio Registry (in-memory storage) listening on 127.0.0.1:port."""

    port: int = DEFAULT_PORT
    version: str = VERSION

    @property
    def home(self) -> Path:
        return LOCAL_ROOT / f"run-{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "registry.pid"

    @property
    def log_file(self) -> Path:
        # The first (default-port) registry logs at .local/registry.log; others beside their pid file.
        return LOCAL_ROOT / "registry.log" if self.port == DEFAULT_PORT else self.home / "registry.log"

    @property
    def url(self) -> str:
        """The Confluent-compatible base URL, what SchemaRegistryClient takes."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    def pid(self) -> int | None:
        """The pid of the running JVM, or None (stale pid files and zombies are ignored)."""
        return running_pid(self.pid_file)

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def start(self, timeout: float = 120.0) -> str:
        """Start the registry if it is not running and wait until it answers; return its URL.

        Idempotent: a registry already running under this port's pid file is reused.
        """
        runner = fetch_dist(self.version)
        if self.pid() is None:
            if self.answers():
                raise RegistryError(f"port {self.port} already serves a registry that is not ours; choose another port")
            java = shutil.which("java")
            if java is None:
                raise RegistryError("Java is not installed: the registry needs Java 17 (apt-get install openjdk-17-jre-headless)")
            self.home.mkdir(parents=True, exist_ok=True)
            command = [java, *JVM_OPTS,
                       f"-Dquarkus.http.port={self.port}", "-Dquarkus.http.host=127.0.0.1",
                       # No usage reporting, no auth, no Kafka/SQL store: plain in-memory.
                       "-Dregistry.auth.enabled=false", "-Dquarkus.log.console.color=false",
                       "-jar", str(runner)]
            with open(self.log_file, "ab") as log:
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           cwd=self.home, start_new_session=True)
            self.pid_file.write_text(str(process.pid))
            say(f"starting Apicurio Registry {self.version} on 127.0.0.1:{self.port} (pid {process.pid})")
        self.wait_ready(timeout)
        return self.url

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise RegistryError(f"the registry exited during start-up:\n{self.log_tail()}")
            if self.answers():
                say(f"ready at {self.url}")
                return
            time.sleep(0.3)
        raise RegistryError(f"the registry did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the registry by pid (SIGTERM, then SIGKILL after `timeout`)."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pid() is not None and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.2)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            while self.pid() is not None:
                _reap(pid)
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        say("stopped")

    def log_tail(self, lines: int = 40) -> str:
        if self.log_file.exists():
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return "(no log written)"


def _reap(pid: int) -> None:
    """Collect the exit status when the JVM is our own child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
