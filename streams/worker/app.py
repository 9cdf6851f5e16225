"""The Faust app: topics, the stream table, the agent, the idle timer and the web pages, wired to the
pipeline core. The logic lives elsewhere: streams/core/pipeline.py (the data path),
streams/worker/agent.py (one batch: dead letters, model thread, publish, table writes),
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
from faust.types import TP

from models.routing import ModelRouter
from models.store import ModelFileError
from streams.client.kafka import faust_broker_config
from streams.client.topics import control_topic
from streams.core.assembly import StreamState
from streams.core.pipeline import Pipeline
from streams.settings import Settings
from streams.worker import metrics
from streams.worker.agent import BatchHandler, WorkerIO, now_ms
from streams.worker.faust_compat import hold, read_offset, release
from streams.worker.idle import idle_requests
from streams.worker.web import WorkerStatus, register_pages

log = logging.getLogger("callstt.worker")


def create_app(settings: Settings, load_router: Callable[[], ModelRouter]) -> faust.App:
    """The worker's Faust app. Models load in the background (`load_router` runs in the model
    thread), so the web server answers /health with 503 and the reason while they load."""
    app = faust.App(
        settings.app_id, **faust_broker_config(settings),
        store="rocksdb://", datadir=settings.data_dir,  # rocksdict under the hood
        topic_partitions=settings.topic_partitions, topic_replication_factor=settings.topic_replication,
        key_serializer="raw", value_serializer="raw", topic_disable_leader=True,
        # Faust binds to web_bind (default 0.0.0.0); web_host is only advertised.
        web_host=settings.web_host, web_bind=settings.web_host, web_port=settings.web_port, web_enabled=True,
    )
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
    status = WorkerStatus(settings)
    control_name = control_topic(settings)
    source = app.topic(settings.audio_topic, control_name, partitions=settings.topic_partitions)
    transcripts, dead_letters, control = (app.topic(settings.transcript_topic), app.topic(settings.dead_letter_topic),
                                          app.topic(control_name))
    # bytes key/value types make Faust use the raw serializer in the store and the changelog.
    table = app.Table("streams", default=None, partitions=settings.topic_partitions, key_type=bytes, value_type=bytes)
    flush_requested: dict[str, float] = {}

    def assigned_partitions() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == settings.audio_topic}

    def partition_lag(partition: int) -> int | None:
        """Audio records of the partition not read yet (None: unknown so far)."""
        tp = TP(settings.audio_topic, partition)
        try:
            highwater = app.consumer.highwater(tp)
        except Exception:  # nothing fetched yet
            return None
        if highwater is None:
            return None
        read = read_offset(app, tp)
        return max(highwater - ((read if read is not None else -1) + 1), 0)

    def write_table(key: str, value: bytes | None) -> None:
        if value is None:
            table.pop(key.encode(), None)
        else:
            table[key.encode()] = value

    handler = BatchHandler(Pipeline.from_settings(settings), status, WorkerIO(
        send_transcript=lambda key, value: transcripts.send(key=key, value=value),
        send_dead_letter=lambda message, headers: dead_letters.send(key=message.key, value=message.value,
                                                                    headers=headers),
        read_table=lambda key: table.get(key.encode()), write_table=write_table,
        caught_up=lambda partition: partition_lag(partition) == 0, control_topic=control_name,
    ), model_thread, flush_requested)

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

    @app.agent(source, concurrency=1)
    async def process(stream):
        await status.models_ready.wait()  # records wait in the consumer meanwhile
        async for events in stream.take_events(settings.batch_max_events, settings.batch_wait_s):
            for event in events:
                hold(event)  # not committed before the batch is done, even if this body is cancelled
            await handler.handle_until_done(events)
            for event in events:
                release(event)

    last_scan = [0.0]

    def rescan_table() -> None:
        """Find streams recovered from the changelog (after a restart or a rebalance)."""
        for raw_key, raw in table.items():
            if raw_key.startswith(b"S|") and raw and raw_key.decode() not in status.streams:
                status.on_stream(raw_key.decode(), StreamState.from_bytes(raw))

    @app.timer(interval=1.0)
    async def flush_idle_streams() -> None:
        """Ask each stream's own partition to flush or evict the streams that went quiet."""
        if time.monotonic() - last_scan[0] > 30:
            last_scan[0] = time.monotonic()
            rescan_table()
        assigned = assigned_partitions()
        for partition in assigned:
            lag = partition_lag(partition)
            if lag is not None:
                metrics.CONSUMER_LAG.labels(str(partition)).set(lag)
        for request in list(idle_requests(status.streams, now_ms(), assigned, lambda p: partition_lag(p) == 0,
                                          settings.idle_flush_s, settings.stream_ttl_s, settings.max_streams)):
            if isinstance(request, str):
                status.forget_stream(request)  # moved to another worker in a rebalance
            elif time.monotonic() - flush_requested.get(request.key, 0) >= settings.idle_flush_s:
                flush_requested[request.key] = time.monotonic()  # else asked already: on its way
                await control.send(key=request.call_id.encode(), partition=request.partition,
                                   value=f"{request.action}|{request.stream_id}".encode())

    status.assigned_partitions = assigned_partitions
    status.lag_records = lambda: sum(partition_lag(p) or 0 for p in assigned_partitions())
    register_pages(app, status)
    return app
