"""A real Apache Kafka broker (or an N-broker cluster) on loopback, without Docker.

Owns the whole life of the project's local broker: fetching the jars from Maven
Central (infra/kafka/pom.xml), formatting KRaft storage, starting each node as
`java -cp ... kafka.Kafka`, waiting until it answers a metadata request, and
stopping it by pid. Data, logs and pid files live under `.local/kafka/` of the
repository (ignored by git). Used by the test fixtures and the benchmark; its
command line is scripts/kafka_local.py (docs/development.md, "The broker by hand").

    from callstt.infra.local.kafka import LocalKafka
    cluster = LocalKafka(name="dev", brokers=1, port=9092)
    bootstrap = cluster.start()      # idempotent; waits until the broker answers
    cluster.stop()                   # or cluster.wipe(): stop and delete its data
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from callstt.infra.local import running_pid
from callstt.schemas.errors import CallsttError

REPO_ROOT = Path(__file__).resolve().parents[2]  # infra/local/kafka.py -> the repository
POM = REPO_ROOT / "infra" / "kafka" / "pom.xml"
LOG4J_CONFIG = REPO_ROOT / "infra" / "kafka" / "log4j.properties"
LOCAL_ROOT = REPO_ROOT / ".local" / "kafka"
LIBS = LOCAL_ROOT / "libs"
LIBS_MARKER = LIBS / ".pom.sha256"

# Per-node JVM options: small heaps so a 3-broker cluster fits beside the model.
JVM_OPTS = ["-server", "-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]


class BrokerError(CallsttError, RuntimeError):
    """The local broker could not be fetched, formatted, started or reached."""


def say(message: str) -> None:
    print(f"[kafka] {message}", file=sys.stderr, flush=True)


def fetch_jars() -> Path:
    """Copy kafka_2.13 and its dependencies into .local/kafka/libs once.

    Maven caches downloads in ~/.m2; the marker (a hash of the POM) lets later
    runs skip Maven entirely, so a second run downloads and resolves nothing.
    """
    pom_hash = hashlib.sha256(POM.read_bytes()).hexdigest()
    if LIBS_MARKER.exists() and LIBS_MARKER.read_text().strip() == pom_hash:
        return LIBS
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is not installed: install it (apt-get install maven) and retry")
    say("fetching Apache Kafka jars from Maven Central (first run only, about 40 MB)...")
    shutil.rmtree(LIBS, ignore_errors=True)
    command = ["mvn", "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
               f"-DoutputDirectory={LIBS}"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"mvn dependency:copy-dependencies failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    LIBS_MARKER.write_text(pom_hash)
    say(f"{len(list(LIBS.glob('*.jar')))} jars in {LIBS.relative_to(REPO_ROOT)}")
    return LIBS


def java_command(main_class: str, *args: str, extra_opts: list[str] | None = None) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise BrokerError("Java is not installed: the broker needs Java 17 (apt-get install openjdk-17-jre-headless)")
    return [java, *JVM_OPTS, *(extra_opts or []), "-cp", f"{LIBS}/*", main_class, *args]


@dataclass(frozen=True)
class Node:
    """One KRaft node acting as both broker and controller."""

    node_id: int
    broker_port: int
    controller_port: int
    home: Path

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def keystore(self) -> Path:
        """PKCS12: this node's TLS key and certificate (signed by the cluster's CA)."""
        return self.home / "tls" / "keystore.p12"

    @property
    def truststore(self) -> Path:
        """PKCS12: the cluster's CA certificate, trusted."""
        return self.home / "tls" / "truststore.p12"

    def pid(self) -> int | None:
        """The pid of this node's running JVM, or None (stale pid files are ignored)."""
        return running_pid(self.pid_file)


@dataclass
class LocalKafka:
    """A local KRaft cluster of `brokers` combined broker+controller nodes.

    Node i (from 1) listens on 127.0.0.1:(port + i - 1) for clients and on
    127.0.0.1:(port + brokers + i - 1) for the controller quorum; with SCRAM users on
    (port + 2 * brokers + i - 1) for SASL_PLAINTEXT, with tls on (port + 3 * brokers + i - 1) for SSL;
    proxied, on (port + 4 * brokers + i - 1) for PLAINTEXT clients that reach it through a proxy
    listening on (port + 5 * brokers + i - 1), the address it advertises on that listener.
    """

    name: str = "dev"
    brokers: int = 1
    port: int = 9092
    # SCRAM-SHA-256 users; when set, each node also listens with SASL_PLAINTEXT on sasl_port(node).
    scram_users: dict[str, str] | None = None
    # When set, each node also listens with SSL on ssl_port(node), with a certificate for
    # 127.0.0.1/localhost signed by a throwaway CA made at start; clients trust `ca_file` (PEM).
    tls: bool = False
    # When set, each node also listens for clients that come through a TCP proxy (a network-fault
    # injector such as Toxiproxy, infra/local/toxiproxy.py) and advertises the proxy's address,
    # so every connection of those clients, not only the first, goes through it.
    proxied: bool = False
    # When set, the broker authorizes every request (KRaft's StandardAuthorizer) and nothing is
    # allowed without an ACL; the PLAINTEXT and controller listeners' principal (ANONYMOUS) is the
    # super user that brokers, controllers and the test's admin client use. Meant with scram_users:
    # the roles connect on the SASL listener, each as its own user.
    authorizer: bool = False

    @property
    def root(self) -> Path:
        return LOCAL_ROOT / self.name

    @property
    def nodes(self) -> list[Node]:
        return [
            Node(i, self.port + i - 1, self.port + self.brokers + i - 1, self.root / f"node{i}")
            for i in range(1, self.brokers + 1)
        ]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{node.broker_port}" for node in self.nodes)

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id - 1]

    def sasl_port(self, node: Node) -> int:
        return self.port + 2 * self.brokers + node.node_id - 1

    @property
    def sasl_bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{self.sasl_port(node)}" for node in self.nodes)

    def ssl_port(self, node: Node) -> int:
        return self.port + 3 * self.brokers + node.node_id - 1

    @property
    def ssl_bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{self.ssl_port(node)}" for node in self.nodes)

    def proxied_port(self, node: Node) -> int:
        """Where the node listens for clients that come through the proxy (the proxy's upstream)."""
        return self.port + 4 * self.brokers + node.node_id - 1

    def proxy_port(self, node: Node) -> int:
        """Where the proxy in front of the node listens: what the node advertises to those clients."""
        return self.port + 5 * self.brokers + node.node_id - 1

    @property
    def proxied_bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{self.proxy_port(node)}" for node in self.nodes)

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def ca_file(self) -> Path:
        """The cluster CA's certificate (PEM), for clients: CALLSTT_KAFKA_SSL_CAFILE."""
        return self.tls_dir / "ca.pem"

    # -- configuration -------------------------------------------------------------

    def server_properties(self, node: Node) -> str:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        replication = min(3, self.brokers)
        min_isr = 2 if self.brokers >= 3 else 1
        settings = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.broker_port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": node.data_dir,
            "num.partitions": 1,
            "default.replication.factor": replication,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replication,
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min_isr,
            # Tests start consumer groups all the time: no point waiting 3 s each.
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
        }
        if self.scram_users:
            sasl = f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port(node)}"
            settings["listeners"] += "," + sasl
            settings["advertised.listeners"] += "," + sasl
            settings["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
            settings["sasl.enabled.mechanisms"] = "SCRAM-SHA-256"
            settings["listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;")
        if self.authorizer:
            settings["authorizer.class.name"] = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
            settings["super.users"] = "User:ANONYMOUS"
            settings["allow.everyone.if.no.acl.found"] = "false"
        if self.tls:
            ssl = f"SSL://127.0.0.1:{self.ssl_port(node)}"
            password = self.store_password()
            settings["listeners"] += "," + ssl
            settings["advertised.listeners"] += "," + ssl
            settings["listener.security.protocol.map"] += ",SSL:SSL"
            settings.update({
                "ssl.keystore.type": "PKCS12", "ssl.keystore.location": node.keystore,
                "ssl.keystore.password": password, "ssl.key.password": password,
                "ssl.truststore.type": "PKCS12", "ssl.truststore.location": node.truststore,
                "ssl.truststore.password": password,
                "ssl.client.auth": "none",
            })
        if self.proxied:
            settings["listeners"] += f",PROXIED://127.0.0.1:{self.proxied_port(node)}"
            settings["advertised.listeners"] += f",PROXIED://127.0.0.1:{self.proxy_port(node)}"
            settings["listener.security.protocol.map"] += ",PROXIED:PLAINTEXT"
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def cluster_id(self) -> str:
        """The cluster's 22-character base64 UUID, made once by Kafka's own StorageTool."""
        id_file = self.root / "cluster.id"
        if id_file.exists():
            return id_file.read_text().strip()
        result = subprocess.run(java_command("kafka.tools.StorageTool", "random-uuid"),
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(f"StorageTool random-uuid failed: {result.stderr[-2000:]}")
        cluster_id = result.stdout.strip().splitlines()[-1]
        self.root.mkdir(parents=True, exist_ok=True)
        id_file.write_text(cluster_id)
        return cluster_id

    # -- TLS ---------------------------------------------------------------------------

    def store_password(self) -> str:
        """The password of every key/trust store of this cluster (random, made once)."""
        password_file = self.tls_dir / "store.password"
        if not password_file.exists():
            self.tls_dir.mkdir(parents=True, exist_ok=True)
            password_file.write_text(secrets.token_hex(16))
            password_file.chmod(0o600)
        return password_file.read_text().strip()

    def make_tls_files(self, node: Node) -> None:
        """The cluster's CA (once), and this node's PKCS12 keystore and truststore (once).

        openssl makes the CA and a certificate for 127.0.0.1 and localhost (subjectAltName, as
        clients verify the host name); keytool writes the truststore Java reads as trusted.
        """
        for tool in ("openssl", "keytool"):
            if shutil.which(tool) is None:
                raise BrokerError(f"{tool} is not installed: the TLS listener needs openssl and a JDK's keytool")
        ca_key = self.tls_dir / "ca.key"
        if not self.ca_file.exists():
            self.tls_dir.mkdir(parents=True, exist_ok=True)
            _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
                  "-out", self.ca_file, "-days", "825", "-subj", f"/CN=callstt local CA {self.name}"],
                 "making the CA")
        if node.keystore.exists() and node.truststore.exists():
            return
        tls = node.keystore.parent
        tls.mkdir(parents=True, exist_ok=True)
        password = self.store_password()
        key, request, cert, extensions = (tls / "broker.key", tls / "broker.csr", tls / "broker.pem",
                                          tls / "broker.ext")
        extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                              "extendedKeyUsage=serverAuth,clientAuth\n")
        _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request,
              "-subj", f"/CN=localhost/OU=node{node.node_id}"], "making the broker key")
        _run(["openssl", "x509", "-req", "-in", request, "-CA", self.ca_file, "-CAkey", ca_key,
              "-CAcreateserial", "-CAserial", self.tls_dir / "ca.srl", "-out", cert, "-days", "825",
              "-extfile", extensions], "signing the broker certificate")
        node.keystore.unlink(missing_ok=True)
        node.truststore.unlink(missing_ok=True)
        _run(["openssl", "pkcs12", "-export", "-in", cert, "-inkey", key, "-certfile", self.ca_file,
              "-name", "broker", "-out", node.keystore, "-passout", f"pass:{password}"], "writing the keystore")
        _run(["keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", self.ca_file,
              "-keystore", node.truststore, "-storetype", "PKCS12", "-storepass", password],
             "writing the truststore")

    def prepare(self, node: Node) -> None:
        """Write the node's config (and TLS files) and format its storage (once)."""
        node.logs_dir.mkdir(parents=True, exist_ok=True)
        if self.tls:
            self.make_tls_files(node)
        node.config_file.write_text(self.server_properties(node))
        if (node.data_dir / "meta.properties").exists():
            return
        scram = [argument for user, password in (self.scram_users or {}).items()
                 for argument in ("--add-scram", f"SCRAM-SHA-256=[name={user},password={password}]")]
        command = java_command("kafka.tools.StorageTool", "format", "-t", self.cluster_id(),
                               "-c", str(node.config_file), "--ignore-formatted", *scram,
                               extra_opts=self.log_opts(node))
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BrokerError(f"formatting node {node.node_id} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")

    def log_opts(self, node: Node) -> list[str]:
        return [f"-Dlog4j.configuration=file:{LOG4J_CONFIG}", f"-Dkafka.logs.dir={node.logs_dir}"]

    # -- life cycle ----------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> str:
        """Start every node that is not running and wait until the cluster answers.

        Idempotent: nodes already running are left alone. Returns the bootstrap servers.
        """
        fetch_jars()
        for node in self.nodes:
            self.start_node(node.node_id)
        self.wait_ready(timeout)
        return self.bootstrap_servers

    def start_node(self, node_id: int) -> None:
        node = self.node(node_id)
        if node.pid() is not None:
            return
        self.prepare(node)
        command = java_command("kafka.Kafka", str(node.config_file), extra_opts=self.log_opts(node))
        with open(node.logs_dir / "stdout.log", "ab") as stdout:
            process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        node.pid_file.write_text(str(process.pid))
        say(f"node {node.node_id} starting on 127.0.0.1:{node.broker_port} (pid {process.pid})")

    def wait_ready(self, timeout: float = 90.0, expected_brokers: int | None = None) -> None:
        """Block until a metadata request lists every running broker."""
        expected = expected_brokers or sum(1 for node in self.nodes if node.pid() is not None)
        deadline = time.monotonic() + timeout
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0,
                             "logger": _silent_logger()})
        last_error = "no answer"
        while time.monotonic() < deadline:
            dead = [node for node in self.nodes if node.pid_file.exists() and node.pid() is None]
            if dead:
                raise BrokerError(f"node {dead[0].node_id} exited during start-up:\n{self.log_tail(dead[0])}")
            try:
                metadata = admin.list_topics(timeout=5)
                if len(metadata.brokers) >= expected:
                    say(f"ready: {len(metadata.brokers)} broker(s) at {self.bootstrap_servers}")
                    return
                last_error = f"{len(metadata.brokers)} of {expected} brokers registered"
            except Exception as error:  # the client raises KafkaException with varying codes
                last_error = str(error)
            time.sleep(0.5)
        raise BrokerError(f"broker did not answer within {timeout:.0f}s ({last_error}):\n"
                          f"{self.log_tail(self.nodes[0])}")

    def stop_node(self, node_id: int, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Stop one node: SIGTERM for a clean shutdown, or SIGKILL to simulate a crash."""
        node = self.node(node_id)
        pid = node.pid()
        if pid is None:
            node.pid_file.unlink(missing_ok=True)
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while node.pid() is not None and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.2)
        if node.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            while node.pid() is not None:
                _reap(pid)
                time.sleep(0.1)
        node.pid_file.unlink(missing_ok=True)
        say(f"node {node.node_id} stopped")

    def stop(self) -> None:
        for node in self.nodes:
            self.stop_node(node.node_id)

    def wipe(self) -> None:
        """Stop the cluster and delete its data (a fresh cluster on next start).

        SIGKILL, not a clean shutdown: the data goes anyway, and the last node of a 3-node
        cluster would wait out stop_node's 30 s for a controller quorum that has already left."""
        for node in self.nodes:
            self.stop_node(node.node_id, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    def running(self) -> list[int]:
        return [node.node_id for node in self.nodes if node.pid() is not None]

    def log_tail(self, node: Node, lines: int = 40, errors: int = 10) -> str:
        """The log's first ERROR/FATAL lines (why a node stopped, e.g. a port it could not bind,
        comes before the long shutdown that follows it), then its last `lines` lines."""
        for log in (node.logs_dir / "server.log", node.logs_dir / "stdout.log"):
            if log.exists():
                text = log.read_text(errors="replace").splitlines()
                first_errors = [line for line in text if " ERROR " in line or " FATAL " in line][:errors]
                head = ["first errors:", *first_errors, "last lines:"] if first_errors else []
                return "\n".join(head + text[-lines:])
        return "(no log written)"


def _run(command: list, what: str) -> None:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"{what} failed ({command[0]} exited {result.returncode}): "
                          f"{result.stdout[-1500:]}{result.stderr[-1500:]}")


def _reap(pid: int) -> None:
    """Collect the exit status when the node is our own child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _silent_logger():
    logger = logging.getLogger("kafka_local.admin")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger
