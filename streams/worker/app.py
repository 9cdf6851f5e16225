"""The Faust app: topics, the stream table, the agent, the idle timer and the web pages, wired to the
pipeline core. The logic lives elsewhere: streams/core/pipeline.py (the data path),
streams/worker/agent.py (batches: accepted while the model runs, then dead letters, model thread,
publish, table writes),
streams/worker/idle.py (which streams to flush or evict), streams/worker/web.py (pages).

One agent instance per worker (concurrency 1): faust-streaming commits past in-flight
messages with concurrency > 1 (its issue 606); the model runs in a thread instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import faust

from callstt.models.asr.routing import ModelRouter
from callstt.models.asr.store import ModelFileError
from callstt.streams.client.kafka import faust_broker_config
from callstt.streams.client.topics import WORKER_TABLE, control_topic
from callstt.streams.core.assembly import StreamState
from callstt.streams.core.call_options import settings_expired
from callstt.streams.core.pipeline import Pipeline, Rejected
from callstt.streams.core_from_settings import build_pipeline
from callstt.streams.lifecycle import add_metrics_port, add_stall_exit, failure_watch
from callstt.streams.settings import Settings
from callstt.streams.web_auth import faust_web_options
from callstt.streams.worker import metrics
from callstt.streams.worker.agent import BatchHandler, WorkerIO, now_ms
from callstt.streams.worker.broker_probe import BrokerProbe
from callstt.streams.worker.downstream_view import follow_downstream
from callstt.streams.worker.faust_compat import (AcknowledgedTable, checkpoint_while_waiting,
                                                 commit_only_past_acknowledged, give_up, hold,
                                                 install_rebalance_fixes, release)
from callstt.streams.worker.idle import idle_requests
from callstt.streams.worker.partitions import AudioPartitions
from callstt.streams.worker.web import WorkerStatus, register_pages

log = logging.getLogger("callstt.worker")


def faust_app(settings: Settings) -> faust.App:
    install_rebalance_fixes()  # (streams/worker/faust_compat.py: else records are lost in a rebalance)
    commit_only_past_acknowledged()  # (streams/worker/faust_compat.py: else held records can be passed)
    return faust.App(
        settings.app_id, **faust_broker_config(settings),
        store="rocksdb://", datadir=settings.data_dir,  # rocksdict under the hood
        topic_partitions=settings.topic_partitions, topic_replication_factor=settings.topic_replication,
        key_serializer="raw", value_serializer="raw", topic_disable_leader=True,
        # Faust binds to web_bind (default 0.0.0.0); web_host is only advertised.
        web_host=settings.web_host, web_bind=settings.web_host, web_port=settings.web_port, web_enabled=True,
        **faust_web_options(settings),  # the credential for pages with call content (streams/web_auth.py)
    )


def create_app(settings: Settings, load_router: Callable[[], ModelRouter]) -> faust.App:
    """The worker's Faust app. Models load in the background (`load_router` runs in the model
    thread), so the web server answers /health with 503 and the reason while they load."""
    app = faust_app(settings)
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")  # finals and speculations
    interim_lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="interims")  # streams/worker/agent.py
    status = WorkerStatus(settings)
    status.watch = watch = failure_watch(settings)
    partitions = AudioPartitions(app, settings.audio_topic)
    control_name = control_topic(settings)
    # Co-partitioned by call ID: a call's audio, its idle-flush requests and its settings meet in one partition.
    source = app.topic(settings.audio_topic, control_name, settings.call_settings_topic,
                       partitions=settings.topic_partitions)
    transcripts, dead_letters = app.topic(settings.transcript_topic), app.topic(settings.dead_letter_topic)
    partials = app.topic(settings.partial_topic)
    table = AcknowledgedTable.add_to(app, WORKER_TABLE, settings.topic_partitions)
    flush_requested: dict[str, float] = {}
    pipeline = build_pipeline(settings)
    status.stages = pipeline.stages  # /stages
    start_labelled_metrics_at_zero()
    outputs = (transcripts, partials, dead_letters)
    handler = batch_handler(app, settings, status, pipeline, table, partitions, outputs, control_name,
                            flush_requested, model_thread, interim_lane)
    add_model_loading(app, status, model_thread, load_router)

    @app.agent(source, concurrency=1)
    async def process(stream):
        await status.models_ready.wait()  # records wait in the consumer meanwhile
        try:
            async for events in stream.take_events(settings.batch_max_events, settings.batch_wait_s):
                for event in events:
                    hold(event)  # not committed before its batch is done (the handler releases it)
                await handler.take(events)  # returns while the model runs: reading goes on
        finally:
            await handler.close()

    add_downstream_view(app, status)
    add_broker_probe(app, settings, status, [settings.audio_topic, control_name, settings.call_settings_topic,
                                             settings.transcript_topic, table.changelog_topic_name])
    add_stall_exit(app, watch, log, metrics.STALLED_SECONDS)
    add_metrics_port(app, metrics.REGISTRY, settings)
    add_idle_timer(app, settings, status, table, partitions, app.topic(control_name), flush_requested, pipeline,
                   handler.checkpoints.waiting)
    status.assigned_partitions, status.lag_records = partitions.assigned, partitions.total_backlog
    register_pages(app, status)
    return app


def start_labelled_metrics_at_zero() -> None:
    """Every label of the dead-letter, speculation and interim counters at 0 from the start (see
    Rejected.REASONS): a dashboard panel is never empty for want of a first."""
    for reason in Rejected.REASONS:
        metrics.DEAD_LETTERS.labels(reason)
    for outcome in metrics.SPECULATIVE_OUTCOMES:
        metrics.SPECULATIVE.labels(outcome)
    for outcome in metrics.INTERIM_OUTCOMES:
        metrics.INTERIMS.labels(outcome)


def batch_handler(app: faust.App, settings: Settings, status: WorkerStatus, pipeline, table: AcknowledgedTable,
                  partitions: AudioPartitions, outputs: tuple, control_name: str, flush_requested: dict[str, float],
                  model_thread: ThreadPoolExecutor, interim_lane: ThreadPoolExecutor) -> BatchHandler:
    """The agent's BatchHandler (streams/worker/agent.py) over the app's topics and table, with
    the hooks Faust's waits and revocations call."""
    transcripts, partials, dead_letters = outputs

    def write_table(key: str, value: bytes | None) -> None:
        if value is None:
            table.pop(key.encode(), None)
        else:
            table[key.encode()] = value

    handler = BatchHandler(pipeline, status, WorkerIO(
        send_transcript=lambda key, value: transcripts.send(key=key, value=value),
        send_partial=lambda key, value: partials.send(key=key, value=value),
        send_dead_letter=lambda message, headers: dead_letters.send(key=message.key, value=message.value,
                                                                    headers=headers),
        read_table=lambda key: table.get(key.encode()), write_table=write_table,
        table_written=table.changes_acknowledged,
        taken_to_end=partitions.taken_to_end, mark_done=partitions.mark_done,
        control_topic=control_name, call_settings_topic=settings.call_settings_topic,
    ), model_thread, flush_requested, release=release, max_open_events=settings.batch_max_events, watch=status.watch,
        interim_lane=interim_lane, checkpoint_interval_ms=int(settings.checkpoint_interval_s * 1000),
        give_up=give_up)
    # Faust waits for every record it handed out before a rebalance or a stop: held ones too.
    checkpoint_while_waiting(app, handler.checkpoint_everything, handler.stop_draining)

    @app.on_partitions_revoked.connect
    async def forget_what_waits_for(app, revoked, **kwargs) -> None:  # noqa: ARG001 (Faust's signal signature)
        handler.partitions_revoked({tp.partition for tp in revoked if tp.topic == settings.audio_topic})

    return handler


def add_model_loading(app: faust.App, status: WorkerStatus, model_thread: ThreadPoolExecutor,
                      load_router: Callable[[], ModelRouter]) -> None:
    """Load the models in the model thread once the app starts; a failure crashes the app (a
    worker without its models must not take partitions)."""

    @app.task
    async def load_models() -> None:
        started = time.perf_counter()
        try:
            router = await asyncio.get_running_loop().run_in_executor(model_thread, load_router)
        except ModelFileError as error:
            status.model_error = str(error)
            log.critical("models could not be loaded: %s", error)
            await app.crash(error)
            return
        metrics.MODEL_LOAD_SECONDS.set(time.perf_counter() - started)
        status.router = router
        status.models_ready.set()
        log.info("models loaded in %.1fs: %s", time.perf_counter() - started, router.describe())


def add_broker_probe(app: faust.App, settings: Settings, status: WorkerStatus, required_topics: list[str]) -> None:
    """Whether the broker answers and still has `required_topics` (streams/worker/broker_probe.py),
    for /health and /metrics."""
    status.broker = BrokerProbe(settings, required_topics, status.watch)

    @app.task
    async def probe_the_broker() -> None:
        await status.broker.run()


def add_downstream_view(app: faust.App, status: WorkerStatus) -> None:
    """The live page's translations and speech (streams/worker/downstream_view.py), followed in
    the background: for the page only, so never a reason for the worker to stop."""

    @app.task
    async def follow_translations_and_speech() -> None:
        while True:
            try:
                await follow_downstream(status, status.speech)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("live page: following the translation and speech topics failed (%s: %s); "
                            "retrying in 10 s", type(error).__name__, error)
                await asyncio.sleep(10.0)


def add_idle_timer(app: faust.App, settings: Settings, status: WorkerStatus, table, partitions: AudioPartitions,
                   control, flush_requested: dict[str, float], pipeline: Pipeline,
                   checkpoint_waiting: Callable[[str], bool]) -> None:
    """Every second: the lag and broker reply-age gauges, and a flush or evict request to the
    own partition of each stream that went quiet, or ended over CALLSTT_STREAM_TTL_S ago, or
    whose changes wait for a checkpoint while it is quiet (streams/worker/idle.py chooses). Every
    30 s (or half the settings' TTL): a scan of the table for streams recovered from the
    changelog and for call settings past CALLSTT_CALL_SETTINGS_TTL_S, whose forgetting is asked
    of their call's partition."""
    last_scan = [0.0]
    scan_every_s = min(30.0, settings.call_settings_ttl_s / 2)

    def rescan_table() -> list[str]:
        """Register streams recovered from the changelog (after a restart or a rebalance); returns
        the calls whose settings expired."""
        expired = []
        for raw_key, raw in table.items():
            if not raw:
                continue
            if raw_key.startswith(b"S|"):  # (audio blocks, the bulk of the table, are not decoded)
                key = raw_key.decode()
                if key not in status.streams and key not in status.ended_streams:
                    status.on_stream(key, StreamState.from_bytes(raw))
            elif raw_key.startswith(b"C|"):
                call_settings = pipeline.decode_call_settings(raw_key[2:].decode(), raw)
                if not isinstance(call_settings, Rejected) and \
                        settings_expired(call_settings, now_ms(), settings.call_settings_ttl_s * 1000):
                    expired.append(call_settings.call_id)
        return expired

    @app.timer(interval=1.0)
    async def flush_idle_streams() -> None:
        if time.monotonic() - last_scan[0] > scan_every_s:
            last_scan[0] = time.monotonic()
            for call_id in rescan_table():  # keyed by call ID: the call's own partition (murmur2)
                await control.send(key=call_id.encode(), value=b"expire-settings|")
        assigned = partitions.assigned()
        for partition in assigned:
            backlog = partitions.backlog(partition)
            if backlog is not None:
                metrics.CONSUMER_LAG.labels(str(partition)).set(backlog)
        metrics.BROKER_REPLY_AGE.set(round(status.broker.reply_age_s(), 1))
        requests = [request for streams in (status.streams, status.ended_streams)
                    for request in idle_requests(streams, now_ms(), assigned, partitions.caught_up,
                                                 settings.idle_flush_s, settings.stream_ttl_s, settings.max_streams,
                                                 checkpoint_waiting, settings.checkpoint_interval_s)]
        for request in requests:
            if isinstance(request, str):
                status.forget_stream(request)  # moved to another worker in a rebalance
            elif time.monotonic() - flush_requested.get(request.key, 0) >= settings.idle_flush_s:
                flush_requested[request.key] = time.monotonic()  # else asked already: on its way
                await control.send(key=request.call_id.encode(), partition=request.partition,
                                   value=f"{request.action}|{request.stream_id}".encode())
