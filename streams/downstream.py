"""What the downstream agents share: the translator (streams/translation/app.py) and the speaker
(streams/speech/app.py) read what an earlier stage published and publish what follows from it.

A downstream agent

* is its own Faust app, so its own consumer group (`<app id>-<suffix>`), data folder
  (`<data dir>/<suffix>`) and web port: it scales, lags and restarts apart from the transcriber
  and from the other agents (`downstream_app`);
* loads what it needs (models, voices) in its own thread at start while its pages answer 503
  (`LoadedAtStart`);
* reads its topics one record at a time (`add_agent`: an agent of concurrency 1 over
  `stream.events()`), and each record's events are published and acknowledged before the next
  record is taken, so a crash repeats a record's output (with the same ids) and never skips it;
* sends a record it cannot decode to the dead-letter topic with the reason in its headers, and
  goes on (`DeadLetters`); any other failure (a broker hiccup, a backend error) is retried with
  backoff until the record is done (`until_done`), never skipped: Faust would restart a crashed
  agent past the record; one that does not pass makes it stalled (503), then exit with code 3
  (streams/lifecycle.py);
* keeps each call's settings (the compacted call-settings topic, co-partitioned with what it
  reads) in a table whose changelog is acknowledged before the next record (`CallSettingsTable`);
* serves `/health` and `/metrics`, the latter from its own prometheus registry, so its numbers
  never mix with another process's (`register_pages`);
* starts the same way: topics created and checked before Faust starts (its tables' changelogs
  too, co-partitioned with what it reads: streams/lifecycle.py `prepare_app_topics`), data
  folder made, a Faust worker (`run_downstream`).

The agent's own module keeps only its logic: what it makes of a record and what it counts.
`build_agent_app` assembles the rest from its registration (streams/agents.py `AgentSpec`):

    app = build_agent_app(settings, TRANSLATOR, REGISTRY, AGENT_METRICS, load_router, handler)

where `handler(parts)` returns the coroutine that handles one input record, given the `AgentParts`
(app, codec, call settings, what was loaded, its thread, dead letters, counters).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import faust
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from callstt.schemas.codec import AvroCodec, DecodeError
from callstt.streams.agents import CALL_SETTINGS_TABLE, AgentSpec
from callstt.streams.client.kafka import avro_codec, faust_broker_config
from callstt.streams.core import retry
from callstt.streams.core.retry import FailureWatch
from callstt.streams.lifecycle import (add_metrics_port, add_stall_exit, check_local_resources, failure_watch,
                                       prepare_app_topics)
from callstt.streams.settings import Settings
from callstt.streams.web_auth import faust_web_options
from callstt.streams.worker.agent import dead_letter_headers
from callstt.streams.worker.faust_compat import AcknowledgedTable, install_rebalance_fixes

T = TypeVar("T")

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"


def downstream_app(settings: Settings, suffix: str, web_port: int) -> faust.App:
    """The agent's Faust app: app id (and consumer group) `<app id>-<suffix>`, data folder
    `<data dir>/<suffix>` (its tables' RocksDB stores: the calls' settings), web pages on
    `web_port`, raw keys and values (the agent decodes them itself, so a bad record becomes a dead
    letter rather than a crash)."""
    install_rebalance_fixes()  # else records can be lost in a rebalance
    return faust.App(
        f"{settings.app_id}-{suffix}", **faust_broker_config(settings),
        store="rocksdb://", datadir=str(Path(settings.data_dir) / suffix),
        topic_partitions=settings.topic_partitions, topic_replication_factor=settings.topic_replication,
        key_serializer="raw", value_serializer="raw", topic_disable_leader=True,
        web_host=settings.web_host, web_bind=settings.web_host, web_port=web_port, web_enabled=True,
        **faust_web_options(settings))  # the credential for Faust's debug pages (streams/web_auth.py)


def register_pages(app: faust.App, service: str, registry: CollectorRegistry,
                   health: Callable[[], dict[str, Any] | str] | None = None,
                   watch: FailureWatch | None = None) -> None:
    """`/health` and `/metrics` (the samples of `registry`).

    `health()` returns what `/health` shows besides service and status when the agent is ready
    (200, status "ok"), or a string, the reason it is not ready yet (503, status "starting").
    Without it the agent is ready as soon as its pages answer. A stalled `watch` (its agent's
    failures: `add_agent`) makes it 503 "stalled" with the reason, whatever `health()` says."""

    @app.page("/health")
    async def health_page(web, request):
        stall = watch.stalled() if watch is not None else None
        if stall is not None:
            return web.json({"service": service, "status": "stalled", "reason": stall.reason,
                             "stalled_seconds": round(watch.stalled_for_s(), 1)}, status=503)
        state = health() if health is not None else {}
        if isinstance(state, str):
            return web.json({"service": service, "status": "starting", "reason": state}, status=503)
        return web.json({"service": service, "status": "ok", **state})

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(generate_latest(registry), content_type=METRICS_CONTENT_TYPE)


def stalled_gauge(registry: CollectorRegistry) -> Gauge:
    """The agent's callstt_stalled_seconds (the worker's has the same name, for the one alert)."""
    return Gauge("callstt_stalled_seconds", "How long the agent has been stalled (0: it is not); it exits at "
                 "CALLSTT_STALL_EXIT_AFTER_S", registry=registry)


class DeadLetters:
    """The agent's dead-letter topic: a record it cannot use goes there unchanged (key and value),
    with headers saying why and where it came from (`dead_letter_headers`), counted by `counter`
    (a prometheus counter, labels already applied) and logged as a warning on `log`. `send`
    returns once the broker has acknowledged it, like the agent's other output."""

    def __init__(self, app: faust.App, settings: Settings, counter: Any, log: logging.Logger) -> None:
        self.topic = app.topic(settings.dead_letter_topic)
        self.counter = counter
        self.log = log

    async def send(self, message: Any, reason: str, detail: str) -> None:
        self.counter.inc()
        self.log.warning("dead-letter %s: %s (topic %s offset %s)", reason, detail, message.topic, message.offset)
        await (await self.topic.send(key=message.key, value=message.value,
                                     headers=dead_letter_headers(message, reason, detail)))

    async def decode(self, message: Any, decode: Callable[[bytes], T]) -> T | None:
        """`decode(message.value)`, or None once the record is dead-lettered (a DecodeError)."""
        try:
            return decode(message.value)
        except DecodeError as error:
            await self.send(message, error.reason, str(error))
            return None


async def until_done(handle: Callable[[Any], Awaitable[None]], message: Any, log: logging.Logger,
                     failures: Any | None = None, watch: FailureWatch | None = None) -> None:
    """`await handle(message)` until it succeeds (streams/core/retry.py): the record's output is
    repeated (same ids), never skipped. `failures`: a counter; `watch` hears of each outcome."""
    def failed(error: Exception, delay: float) -> None:
        if failures is not None:
            failures.inc()
        log.exception("record at %s[%s]@%s failed (%s: %s); retrying in %.1f s", message.topic, message.partition,
                      message.offset, type(error).__name__, error, delay)

    await retry.until_done(lambda: handle(message), failed, watch)


class CallSettingsTable:
    """The calls' settings as the agent last read them: a table (`<app>-call-settings-changelog`),
    each change in the changelog before the record that made it may be committed, so a crash
    never leaves a committed settings record unapplied. `count(kind)`: "settings_set" or
    "settings_cleared"; a record that does not decode is dead-lettered."""

    def __init__(self, app: faust.App, settings: Settings, codec: Any, dead_letters: DeadLetters,
                 count: Callable[[str], None]) -> None:
        self.table = AcknowledgedTable.add_to(app, CALL_SETTINGS_TABLE, settings.topic_partitions)
        self.codec, self.dead_letters, self.count = codec, dead_letters, count
        self.topic = settings.call_settings_topic

    async def keep(self, message: Any) -> None:
        """A call-settings record (or a tombstone clearing them)."""
        if message.value is None:
            self.table.pop(message.key, None)
            self.count("settings_cleared")
        elif await self.dead_letters.decode(message, self.codec.decode_call_settings) is not None:
            self.table[message.key] = message.value
            self.count("settings_set")
        await self.table.changes_acknowledged()

    def get(self, call_key: bytes | None) -> Any:
        """The call's CallSettings, or None (no settings, or a record without a key)."""
        raw = self.table.get(call_key) if call_key else None
        return self.codec.decode_call_settings(raw) if raw else None


class LoadedAtStart:
    """What an agent loads at start (its translation backends, its voices: anything with
    `describe()`), in the agent's own thread, while its pages already answer (503, "<what>
    loading") and its records wait in the consumer."""

    def __init__(self, app: faust.App, thread: Any, load: Callable[[], Any], what: str,
                 log: logging.Logger) -> None:
        self.value: Any = None
        self.ready = asyncio.Event()
        self.what = what

        @app.task
        async def load_at_start() -> None:
            self.value = await asyncio.get_running_loop().run_in_executor(thread, load)
            self.ready.set()
            log.info("%s loaded: %s", what, self.value.describe())

    def health(self) -> dict[str, Any] | str:
        """For `register_pages`: what was loaded, or why the agent is not ready yet."""
        return self.value.describe() if self.ready.is_set() else f"{self.what} loading"


def add_agent(app: faust.App, settings: Settings, source: Any, loaded: LoadedAtStart,
              call_settings: CallSettingsTable, handle: Callable[[Any], Awaitable[None]], log: logging.Logger,
              failures: Any, stalled: Gauge) -> FailureWatch:
    """The agent: once `loaded`, one record at a time (each acknowledged before the next is
    taken), call-settings records into `call_settings`, every other one to `handle`, each until
    done. Returns the watch of its failures (for `register_pages`); a stalled agent exits in
    time (streams/lifecycle.py), `stalled` (`stalled_gauge`) saying how long it has been stalled."""
    settings_topic = call_settings.topic
    watch = failure_watch(settings)
    add_stall_exit(app, watch, log, stalled)

    @app.agent(source, concurrency=1)
    async def agent(stream):
        await loaded.ready.wait()  # records wait in the consumer meanwhile
        async for event in stream.events():
            message = event.message
            await until_done(call_settings.keep if message.topic == settings_topic else handle, message, log, failures,
                             watch)

    return watch

def run_downstream(settings: Settings, app: faust.App, agent: AgentSpec) -> None:
    """Run the agent until it is stopped: its topics and its tables' changelogs created where
    missing and checked (streams/lifecycle.py, as its ACL role may), its data folder made (Faust
    expects it), a Faust worker on `app`."""
    check_local_resources(str(app.conf.datadir), settings.web_host, app.conf.web_port,  # makes the data folder
                          settings.metrics_port)
    prepare_app_topics(settings, app, agent.name)  # its name is its ACL role
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), redirect_stdouts=False)
    logging.getLogger(f"callstt.{agent.name}").info("%s web pages on http://%s:%d/ (health: /health, metrics: "
                                                    "/metrics)", agent.name, settings.web_host, app.conf.web_port)
    worker.execute_from_commandline()


@dataclass(frozen=True)
class AgentMetrics:
    """What every agent counts, under its name: records read by kind, records retried, stalled time."""

    records: Counter
    failures: Counter
    stalled: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry, agent: AgentSpec, records_help: str) -> AgentMetrics:
        return cls(Counter(f"callstt_{agent.name}_records_total", records_help, ["kind"], registry=registry),
                   Counter(f"callstt_{agent.name}_failures_total", "Records whose handling failed and was retried",
                           registry=registry),
                   stalled_gauge(registry))


@dataclass(frozen=True)
class AgentParts:
    """What an agent's record handler works with (`build_agent_app` makes them)."""

    app: faust.App
    settings: Settings
    codec: AvroCodec
    call_settings: CallSettingsTable
    loaded: LoadedAtStart  # `.value`: what `load` returned
    thread: ThreadPoolExecutor  # the agent's one thread for model work (loading too)
    dead_letters: DeadLetters
    metrics: AgentMetrics
    log: logging.Logger


def build_agent_app(settings: Settings, agent: AgentSpec, registry: CollectorRegistry, metrics: AgentMetrics,
                    load: Callable[[], Any], handler: Callable[[AgentParts], Callable[[Any], Awaitable[None]]]
                    ) -> faust.App:
    """The agent's Faust app (`downstream_app`): its inputs with the calls' settings (co-partitioned
    by call ID, so a call's settings and records meet in one partition), what it loads at start in
    its thread, its dead letters and call-settings table, one record at a time through
    `handler(parts)` (`add_agent`), its pages (`register_pages`) and metrics port."""
    log = logging.getLogger(f"callstt.{agent.name}")
    app = downstream_app(settings, agent.suffix, getattr(settings, agent.web_port))
    source = app.topic(*agent.reads(settings), settings.call_settings_topic, partitions=settings.topic_partitions)
    dead_letters = DeadLetters(app, settings, metrics.records.labels("dead_letter"), log)
    codec = avro_codec(settings)
    call_settings = CallSettingsTable(app, settings, codec, dead_letters, lambda kind: metrics.records.labels(kind).inc())
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=agent.suffix)
    loaded = LoadedAtStart(app, thread, load, agent.loads, log)
    parts = AgentParts(app, settings, codec, call_settings, loaded, thread, dead_letters, metrics, log)
    watch = add_agent(app, settings, source, loaded, call_settings, handler(parts), log, metrics.failures,
                      metrics.stalled)
    register_pages(app, f"callstt-{agent.name}", registry, loaded.health, watch)
    add_metrics_port(app, registry, settings)
    return app

