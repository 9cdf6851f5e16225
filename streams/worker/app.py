"""The Faust app: topics, the stream table, the agent, the idle timer and the worker's web pages.

Data path of one batch of chunks (see docs/data-path.md): audio topic -> `process` agent
(take_events) -> per chunk codec.decode_chunk -> StreamAssembler.accept through a TableBatch
(sequencing, decode, VAD, endpointing) -> model thread, every finished utterance at once
(models.batching.choose_and_transcribe) -> transcript topic, acknowledged -> table writes ->
records acked -> offset commit (Faust flushes the producer before it commits).

Guarantee: at-least-once. Table state is written only after the transcripts it led to
are acknowledged, so a crash repeats work (same transcript_id) and never skips it.
One agent instance per worker (concurrency 1): faust-streaming commits past in-flight
messages with concurrency > 1 (its issue 606); the model runs in a thread instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import faust
import faust.streams as faust_streams
from faust.types import TP

from models.batching import PendingUtterance, choose_and_transcribe
from models.endpointing import EndpointConfig, EndpointState
from models.errors import BadChunk
from models.routing import ModelRouter
from models.store import ModelFileError
from schemas.codec import AvroCodec, DecodeError
from streams.worker import metrics
from streams.core.assembly import SAMPLE_RATE, AssemblyConfig, Outcome, StreamAssembler, StreamState, state_key
from streams.core.batch import TableBatch
from streams.settings import Settings
from streams.client.topics import control_topic
from streams.core.transcripts import build_transcript, is_non_speech, should_stick
from streams.worker.web import WorkerStatus, register_pages

log = logging.getLogger("callstt.worker")

def now_ms() -> int:
    return int(time.time() * 1000)


def create_app(settings: Settings, load_router: Callable[[], ModelRouter]) -> faust.App:
    """The worker's Faust app. Models load in the background (`load_router` runs in the model
    thread), so the web server answers /health with 503 and the reason while they load."""
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        broker_credentials=settings.faust_credentials(),  # TLS / SASL from settings
        store="rocksdb://",  # rocksdict under the hood
        datadir=settings.data_dir,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        web_host=settings.web_host,
        web_bind=settings.web_host,  # Faust binds to web_bind (default 0.0.0.0); web_host is only advertised
        web_port=settings.web_port,
        web_enabled=True,
        topic_disable_leader=True,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_s / 3),  # Kafka wants < 1/3
    )
    codec = AvroCodec(settings.schema_registry_url or None)
    assembler = StreamAssembler(AssemblyConfig(endpoint=EndpointConfig(
        min_silence_ms=settings.min_silence_ms, max_utterance_ms=settings.max_utterance_ms)))
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
    status = WorkerStatus(settings)

    source = app.topic(settings.audio_topic, control_topic(settings), partitions=settings.topic_partitions)
    transcripts = app.topic(settings.transcript_topic)
    dead_letters = app.topic(settings.dead_letter_topic)
    # bytes key/value types make Faust use the raw serializer in the store and the changelog.
    table = app.Table("streams", default=None, partitions=settings.topic_partitions,
                      key_type=bytes, value_type=bytes)
    flush_requested: dict[str, float] = {}

    control_name = control_topic(settings)

    def bind(event) -> None:
        """Make `event` Faust's current event in this task. Table reads and writes go to the
        current event's partition (its store and its changelog partition); Faust sets it while a
        stream is read one event at a time, but `take_events` hands over a batch, so each event
        is bound before its table work. Only the context variable is set: the stream's own
        `current_event` attribute belongs to the background reader that fills the batch."""
        faust_streams._current_event.set(weakref.ref(event))

    def table_get(key: str) -> bytes | None:
        return table.get(key.encode())

    async def dead_letter(event, reason: str, detail: str) -> None:
        message = event.message
        metrics.DEAD_LETTERS.labels(reason).inc()
        log.warning("dead-letter %s: %s (topic %s partition %s offset %s)", reason, detail,
                    message.topic, message.partition, message.offset)
        headers = {"reason": reason.encode(), "detail": detail[:500].encode(),
                   "source_topic": message.topic.encode(), "source_partition": str(message.partition).encode(),
                   "source_offset": str(message.offset).encode()}
        future = await dead_letters.send(key=message.key, value=message.value, headers=headers)
        await future

    async def chunk_outcome(event, batch: TableBatch) -> Outcome | None:
        """One audio chunk through its stream; None when the record went to the dead-letter topic."""
        metrics.CHUNKS.inc()
        metrics.CHUNK_BYTES.inc(len(event.message.value or b""))
        try:
            with metrics.timed("avro_decode"):
                chunk = codec.decode_chunk(event.message.value)
        except DecodeError as error:
            await dead_letter(event, error.reason, str(error))
            return None
        try:
            started = time.perf_counter()
            state = batch.state(chunk.call_id, chunk.stream_id) or assembler.new_state(chunk.call_id, chunk.stream_id)
            outcome = assembler.accept(state, chunk, now_ms(), batch.read)
            metrics.STAGE_SECONDS.labels("audio_decode").inc(outcome.decode_seconds)
            metrics.STAGE_SECONDS.labels("vad").inc(outcome.vad_seconds)
            metrics.STAGE_SECONDS.labels("assembly").inc(
                max(time.perf_counter() - started - outcome.decode_seconds - outcome.vad_seconds, 0.0))
            return outcome
        except BadChunk as error:
            await dead_letter(event, error.reason, f"call {chunk.call_id} stream {chunk.stream_id}: {error}")
        except Exception as error:  # a bug on odd input must not stop the partition: park the record
            log.exception("processing failed for call %s stream %s", chunk.call_id, chunk.stream_id)
            await dead_letter(event, "processing_error", f"{type(error).__name__}: {error}")
        return None

    def control_outcome(event, batch: TableBatch) -> Outcome | None:
        """A request from the timer, run in the stream's own partition: `flush|stream` or `evict|stream`."""
        call_id = event.message.key.decode()
        action, _, stream_id = event.message.value.decode().partition("|")
        state = batch.state(call_id, stream_id)
        if state is None:
            status.forget_stream(state_key(call_id, stream_id))  # ended or evicted meanwhile
            return None
        idle_ms = now_ms() - state.last_received_ms
        if action == "evict":
            log.info("evicting stream call=%s stream=%s (idle %.0fs)", call_id, stream_id, idle_ms / 1000)
            return assembler.evict(state, now_ms(), batch.read)
        if (EndpointState.from_bytes(state.endpoint).is_open and idle_ms >= settings.idle_flush_s * 1000
                and partition_lag(event.message.partition) == 0):
            return assembler.flush_idle(state, now_ms(), batch.read)
        return None  # nothing open, or audio came back after the request was sent

    async def publish(batch: TableBatch) -> None:
        """Transcribe every utterance the batch finished, across calls, in one go in the model thread
        (`CALLSTT_INFERENCE_MODE`: one per model call, batched or packed), and publish the
        transcripts, acknowledged."""
        # Each outcome's state carries its stream's language as the batch found it (languages
        # change only below, after the model has run).
        ready = [(outcome.state, utterance) for _, outcome in batch.outcomes for utterance in outcome.utterances]
        if not ready:
            return
        decided_at = time.time()
        pending = []
        for state, utterance in ready:
            pending.append(PendingUtterance(stream=state_key(utterance.call_id, utterance.stream_id),
                                            audio=utterance.audio, hint=utterance.hint,
                                            sticky_language=state.language,
                                            sticky_probability=state.language_probability))
            metrics.UTTERANCES.labels(utterance.reason).inc()
            metrics.UTTERANCE_SECONDS.observe(len(utterance.audio) / SAMPLE_RATE)
        started = time.perf_counter()
        decisions = await asyncio.get_running_loop().run_in_executor(
            model_thread, choose_and_transcribe, status.router, pending, settings.inference_mode,
            settings.inference_batch_size, settings.pack_window_s, settings.pack_gap_s)
        metrics.STAGE_SECONDS.labels("model").inc(time.perf_counter() - started)
        metrics.UTTERANCES_PER_MODEL_CALL.observe(len(ready))
        with metrics.timed("publish"):
            sent = []
            for (_, utterance), decided in zip(ready, decisions):
                audio_seconds = len(utterance.audio) / SAMPLE_RATE
                metrics.INFERENCE_SECONDS.observe(decided.model_seconds)
                if audio_seconds > 0:
                    metrics.REALTIME_FACTOR.observe(decided.model_seconds / audio_seconds)
                latest = batch.latest_state(utterance.call_id, utterance.stream_id)
                if latest is not None and should_stick(decided.choice, utterance):
                    latest.language, latest.language_probability = decided.choice.language, decided.choice.probability
                if is_non_speech(decided.result):
                    metrics.SILENT_UTTERANCES.inc()
                    continue
                transcript = build_transcript(utterance, decided.result, decided.choice, settings.model_version_label)
                value = codec.encode_transcript(transcript, settings.transcript_topic)
                sent.append((transcript, await transcripts.send(key=transcript.call_id.encode(), value=value)))
            for transcript, future in sent:  # all in flight at once; each partition keeps its order
                await future
                acknowledged = time.time()
                metrics.TRANSCRIPTS.labels(transcript.language, transcript.model_name).inc()
                metrics.ENDPOINT_LATENCY.observe(acknowledged - decided_at)
                if transcript.last_audio_capture_ts_ms > 0:
                    metrics.END_OF_SPEECH_LATENCY.observe(
                        max(acknowledged - transcript.last_audio_capture_ts_ms / 1000, 0))
                status.on_transcript(transcript)
                log.info("transcript call=%s stream=%s #%d [%s] %s", transcript.call_id, transcript.stream_id,
                         transcript.utterance_index, transcript.language, transcript.text)

    def save(batch: TableBatch) -> None:
        """The batch's table changes, each bound to its own event (so to its partition)."""
        with metrics.timed("table_writes"):
            for key, value, event in batch.changes(partition_of=lambda event: event.message.partition):
                bind(event)
                if value is None:
                    table.pop(key.encode(), None)
                else:
                    table[key.encode()] = value
        for _, outcome in batch.outcomes:
            key = state_key(outcome.state.call_id, outcome.state.stream_id)
            if outcome.finished:
                status.forget_stream(key)
            else:
                status.on_stream(key, outcome.state)
            flush_requested.pop(key, None)
            metrics.GAP_CHUNKS.inc(outcome.gaps_filled)
            metrics.DUPLICATE_CHUNKS.inc(outcome.duplicates)

    async def handle_batch(events) -> None:
        """Events in arrival order through their streams, then one model call for every utterance
        they finished, then the transcripts acknowledged, then the table writes. Faust acks the
        events (so their offsets may be committed) only after this returns."""
        batch = TableBatch(read=table_get)
        metrics.EVENTS_PER_BATCH.observe(len(events))
        for event in events:
            bind(event)
            if event.message.topic == control_name:
                outcome = control_outcome(event, batch)
            else:
                outcome = await chunk_outcome(event, batch)
            if outcome is not None:
                batch.record(outcome, event)
        await publish(batch)
        save(batch)

    async def handle_batch_until_done(events) -> None:
        """A batch that fails (a broker hiccup, a table's changelog not known yet) is retried as a
        whole, with backoff, rather than skipped: its transcripts were published at most, and the
        table writes made before the failure only tell the retry that those chunks are done."""
        delay = 0.5
        while True:
            try:
                await handle_batch(events)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                metrics.BATCH_FAILURES.inc()
                log.exception("a batch of %d records failed (%s: %s); retrying in %.1f s, its records stay "
                              "unacknowledged meanwhile", len(events), type(error).__name__, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

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
            # take_events acks every record of the batch when this body ends, even when it ends by
            # cancellation (a shutdown or a rebalance mid-inference): an extra reference on each
            # record keeps those acks from letting its offset be committed until the batch is done.
            for event in events:
                event.message.incref()
            await handle_batch_until_done(events)
            for event in events:
                event.message.decref()  # done: take_events' own ack now releases the record

    control = app.topic(control_name)

    last_scan = [0.0]

    def rescan_table() -> None:
        """Find streams recovered from the changelog (after a restart or a rebalance)."""
        for raw_key, raw in table.items():
            if raw_key.startswith(b"S|") and raw and raw_key.decode() not in status.streams:
                status.on_stream(raw_key.decode(), StreamState.from_bytes(raw))

    def partition_lag(partition: int) -> int | None:
        """Audio records of the partition not read yet (None: unknown so far)."""
        tp = TP(settings.audio_topic, partition)
        read = getattr(app.consumer, "_read_offset", {}).get(tp)
        try:
            highwater = app.consumer.highwater(tp)
        except Exception:  # nothing fetched yet
            return None
        if highwater is None:
            return None
        return max(highwater - ((read if read is not None else -1) + 1), 0)

    def update_lag() -> None:
        for partition in assigned_partitions():
            lag = partition_lag(partition)
            if lag is not None:
                metrics.CONSUMER_LAG.labels(str(partition)).set(lag)

    @app.timer(interval=1.0)
    async def flush_idle_streams() -> None:
        """Ask each stream's own partition to flush a stream whose producer went quiet, or to
        evict one idle past its TTL or over the stream cap (memory stays bounded)."""
        if time.monotonic() - last_scan[0] > 30:
            last_scan[0] = time.monotonic()
            rescan_table()
        update_lag()
        now = now_ms()
        # Over the cap, the longest-idle streams go first.
        by_idleness = sorted(status.streams.items(), key=lambda item: item[1]["last_chunk_ms"])
        over_cap = {key for key, _ in by_idleness[:max(len(by_idleness) - settings.max_streams, 0)]}
        assigned = assigned_partitions()
        for key, view in by_idleness:
            partition = view["partition"]
            if partition not in assigned:
                status.forget_stream(key)  # moved to another worker in a rebalance
                continue
            idle_ms = now - view["last_chunk_ms"]
            if key in over_cap or idle_ms >= settings.stream_ttl_s * 1000:
                action = "evict"
            elif idle_ms >= settings.idle_flush_s * 1000 and view["utterance_open"] and partition_lag(partition) == 0:
                # Quiet only counts once the partition is read to its end: a worker that is behind
                # has the stream's next chunks waiting, and must not cut the utterance early.
                action = "flush"
            else:
                continue
            if time.monotonic() - flush_requested.get(key, 0) < settings.idle_flush_s:
                continue  # asked already; the request is on its way
            flush_requested[key] = time.monotonic()
            # The stream's own partition re-checks the request against the stream's real state.
            await control.send(key=view["call_id"].encode(), value=f"{action}|{view['stream_id']}".encode(),
                               partition=partition)

    def assigned_partitions() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == settings.audio_topic}

    status.assigned_partitions = assigned_partitions
    status.lag_records = lambda: sum(partition_lag(p) or 0 for p in assigned_partitions())
    register_pages(app, status)
    return app
