"""How every Faust process of the project (the worker, the translator, the speaker) starts, and
when it gives up.

Start: before Faust starts, the topics the process reads and writes are created where missing,
its tables' changelogs too, and checked: present with a leader per partition, and the topics a
table joins co-partitioned (`prepare_app_topics`, through streams/client/topics.py). A layout that
cannot work stops the start with one line, instead of failing batch after batch later.

Run: the process's unit of work (the worker's batch, an agent's record) is retried until done
(streams/core/retry.py), and a `FailureWatch` tells a passing failure from one that is not:
a permanent cause (`is_permanent`), or a passing one that lasts CALLSTT_STALL_AFTER_S, makes the
process *stalled*: /health answers 503 "stalled" with the reason, `callstt_stalled_seconds`
counts, the alert CallsttStalled fires; stalled for CALLSTT_STALL_EXIT_AFTER_S more, the process
exits with code 3 (`EXIT_STALLED`) so its supervisor restarts it. Its records were never
committed, so the restarted process (or another of its group) does them again: nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import uuid
from collections.abc import Callable
from typing import Any

from faust.exceptions import PartitionsMismatch
from prometheus_client import start_http_server

from callstt.schemas.codec import EncodeError
from callstt.schemas.errors import CallsttError
from callstt.streams.client.acls import topics_used
from callstt.streams.client.kafka import confluent_config, principal
from callstt.streams.client.topics import changelog_topics, prepare_topics
from callstt.streams.core.retry import FailureWatch
from callstt.streams.settings import Settings

EXIT_STALLED = 3
CHECK_EVERY_S = 1.0


class StartError(CallsttError, RuntimeError):
    """Something on this machine the process needs is not usable: its state folder, its web port."""


def check_local_resources(data_dir: str, web_host: str, web_port: int, metrics_port: int = 0) -> None:
    """Before anything starts: the state folder can be written (Faust keeps the tables' RocksDB
    stores there) and the web port (and the metrics port, when one is set) is free, each refused
    with one line naming the setting, rather than a traceback from inside Faust."""
    probe = os.path.join(data_dir, f".callstt-write-check-{uuid.uuid4().hex[:8]}")
    try:
        os.makedirs(data_dir, exist_ok=True)
        with open(probe, "w") as written:
            written.write("ok")
        os.remove(probe)
    except OSError as error:
        raise StartError(f"the state folder {data_dir} cannot be written ({error.strerror or error}); set "
                         "CALLSTT_DATA_DIR to a folder this user may write") from error
    check_port_free(web_host, web_port, "the web port", "choose another with --web-port")
    if metrics_port:
        check_port_free(web_host, metrics_port, "the metrics port", "choose another with CALLSTT_METRICS_PORT")


def check_port_free(host: str, port: int, what: str, remedy: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server binds
        try:
            listener.bind((host, port))
        except OSError as error:
            raise StartError(f"{what} {host}:{port} cannot be used ({error.strerror or error}); "
                             f"another process has it? {remedy[0].upper()}{remedy[1:]}") from error


def source_topics(app: Any) -> list[str]:
    """The topics the app's agents read (each agent's channel), in order, without repeats."""
    names: list[str] = []
    for agent in app.agents.values():
        names += [name for name in getattr(agent.channel, "topics", ()) if name not in names]
    return names


def prepare_app_topics(settings: Settings, app: Any, role: str) -> list[str]:
    """Create and check the topics `app` needs (streams/client/topics.py prepare_topics): the
    project topics its `role` uses (streams/client/acls.py), and its tables' changelogs; its
    agents' source topics and those changelogs must be co-partitioned. Returns the names created."""
    changelogs = changelog_topics(settings, app.tables.values())
    return prepare_topics(settings, topics_used(settings, role), changelogs,
                          source_topics(app) + [spec.name for spec in changelogs])


def causes(error: BaseException) -> list[BaseException]:
    """The error and what it wraps (Faust's ProducerSendError wraps the client's error)."""
    chain: list[BaseException] = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def denied(error: BaseException) -> bool:
    """The broker refused the principal (an ACL missing) or its credentials."""
    return what_was_denied(error) is not None


def is_permanent(error: BaseException) -> bool:
    """A failure that retrying cannot mend: topics that stopped being co-partitioned (a changelog
    deleted and made again with another count), a record the schema cannot hold, a state
    directory the process may not write, credentials or ACLs a broker refuses. Everything else
    (broker unreachable, leader moving, timeouts) passes, usually."""
    return isinstance(error, (PartitionsMismatch, EncodeError, PermissionError)) or denied(error)


def what_was_denied(error: BaseException) -> str | None:
    """What the broker refused, as far as the error chain tells (None if it refused nothing):
    the client's error names the kind of resource, and a producer's send wraps it."""
    names = [type(cause).__name__ for cause in causes(error)]
    if any(name.endswith("AuthenticationFailedError") for name in names):
        return "log in (credentials refused)"
    if any(name.startswith("GroupAuthorizationFailed") for name in names):
        return "Read its consumer group"
    if any(name.endswith("AuthorizationFailedError") for name in names):
        sending = any(name.startswith("ProducerSend") for name in names)
        return "Write a topic it sends to" if sending else "Read or Describe a topic it needs"
    return None


def failure_watch(settings: Settings) -> FailureWatch:
    who = principal(confluent_config(settings))

    def described(error: Exception) -> str:
        said = f"{type(error).__name__}: {error}"
        refused = what_was_denied(error)
        return said if refused is None else f"{who} may not {refused} (see `callstt acls`): {said}"

    return FailureWatch(settings.stall_after_s, settings.stall_exit_after_s, is_permanent, describe=described)


def add_metrics_port(app: Any, registry: Any, settings: Settings) -> None:
    """With CALLSTT_METRICS_PORT set, a task of `app` that serves `registry` on that port alone
    (prometheus_client's own HTTP server, a thread): a network policy can then let Prometheus
    reach the metrics and nothing else, and the web port's /metrics needs the web credential."""
    if not settings.metrics_port:
        return

    @app.task
    async def serve_metrics_port() -> None:
        start_http_server(settings.metrics_port, addr=settings.web_host, registry=registry)
        logging.getLogger("callstt").info("metrics on http://%s:%d/metrics", settings.web_host,
                                          settings.metrics_port)


def add_stall_exit(app: Any, watch: FailureWatch, log: logging.Logger, gauge: Any,
                   exit_process: Callable[[int], None] = os._exit) -> None:
    """A task of `app`: every second, `gauge` (callstt_stalled_seconds) set to how long the process
    has been stalled (0: it is not); once that reaches CALLSTT_STALL_EXIT_AFTER_S, one critical
    line and an immediate exit with EXIT_STALLED. Immediate (as a crash would be): an orderly
    shutdown could hang on the very broker or topic that stalled it, and at-least-once never
    needed one (no offset passes a record whose work is not done)."""

    @app.task
    async def exit_when_stalled_too_long() -> None:
        said_stalled = False
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            stall = watch.stalled()
            gauge.set(round(watch.stalled_for_s(), 1))
            if stall is not None and not said_stalled:
                log.error("stalled: %s; /health answers 503, exit in %.0f s unless it passes", stall.reason,
                          watch.exit_after_s)
            said_stalled = stall is not None
            if stall is not None and watch.should_exit():
                log.critical("exiting (code %d) after %.0f s stalled: %s; the records not done stay "
                             "uncommitted and are done again after the restart", EXIT_STALLED,
                             watch.stalled_for_s(), stall.reason)
                logging.shutdown()
                sys.stderr.flush()
                exit_process(EXIT_STALLED)

