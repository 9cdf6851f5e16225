"""The Faust app: topics, the stream table, the agent, the idle timer and the worker's web pages.

Data path of one chunk (see docs/data-path.md): audio topic -> `process` agent ->
codec.decode_chunk -> StreamAssembler.accept (sequencing, decode, VAD, endpointing) ->
model thread (transcripts.transcribe_utterance) -> transcript topic, acknowledged ->
table writes -> offset commit (Faust flushes the producer before it commits).

Guarantee: at-least-once. Table state is written only after the transcripts it led to
are acknowledged, so a crash repeats work (same transcript_id) and never skips it.
One agent instance per worker (concurrency 1): faust-streaming commits past in-flight
messages with concurrency > 1 (its issue 606); the model runs in a thread instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import faust

from models.endpointing import EndpointConfig, EndpointState
from models.errors import BadChunk
from models.routing import ModelRouter
from schemas.codec import AvroCodec, DecodeError
from streams import metrics
from streams.assembly import AssemblyConfig, Outcome, StreamAssembler, StreamState, state_key
from streams.settings import Settings
from streams.topics import control_topic
from streams.transcripts import should_stick, transcribe_utterance

log = logging.getLogger("callstt.worker")

MODEL_VERSION = "1"


def now_ms() -> int:
    return int(time.time() * 1000)


def create_app(settings: Settings, router: ModelRouter) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        store="rocksdb://",  # rocksdict under the hood
        datadir=settings.data_dir,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_enabled=True,
        topic_disable_leader=True,
    )
    codec = AvroCodec(settings.schema_registry_url or None)
    assembler = StreamAssembler(AssemblyConfig(endpoint=EndpointConfig(
        min_silence_ms=settings.min_silence_ms, max_utterance_ms=settings.max_utterance_ms)))
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    source = app.topic(settings.audio_topic, control_topic(settings), partitions=settings.topic_partitions)
    transcripts = app.topic(settings.transcript_topic)
    dead_letters = app.topic(settings.dead_letter_topic)
    # bytes key/value types make Faust use the raw serializer in the store and the changelog.
    table = app.Table("streams", default=None, partitions=settings.topic_partitions,
                      key_type=bytes, value_type=bytes)
    # Streams this worker saw, for the idle timer: state key -> partition.
    recent_streams: dict[str, int] = {}
    flush_requested: dict[str, float] = {}

    def read_block(key: str) -> bytes | None:
        return table.get(key.encode())

    def load_state(call_id: str, stream_id: str) -> StreamState | None:
        raw = table.get(state_key(call_id, stream_id).encode())
        return StreamState.from_bytes(raw) if raw else None

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

    async def publish(outcome: Outcome) -> None:
        """Transcribe the outcome's utterances in the model thread and publish them, acknowledged."""
        loop = asyncio.get_running_loop()
        state = outcome.state
        for utterance in outcome.utterances:
            metrics.UTTERANCES.labels(utterance.reason).inc()
            metrics.UTTERANCE_SECONDS.observe(len(utterance.audio) / 16000)
            result = await loop.run_in_executor(model_thread, transcribe_utterance, router, utterance,
                                                state.language, state.language_probability, MODEL_VERSION)
            metrics.MODEL_SECONDS.observe(result.model_seconds)
            if should_stick(result.choice, utterance):
                state.language, state.language_probability = result.choice.language, result.choice.probability
            if result.transcript is None:
                metrics.SILENT_UTTERANCES.inc()
                continue
            transcript = result.transcript
            future = await transcripts.send(key=transcript.call_id.encode(),
                                            value=codec.encode_transcript(transcript, settings.transcript_topic))
            await future
            metrics.TRANSCRIPTS.labels(transcript.language, transcript.backend).inc()
            log.info("transcript call=%s stream=%s #%d [%s] %s", transcript.call_id, transcript.stream_id,
                     transcript.utterance_index, transcript.language, transcript.text)

    def save(outcome: Outcome, partition: int) -> None:
        for key in outcome.deletes:
            table.pop(key.encode(), None)
        for key, value in outcome.writes.items():
            table[key.encode()] = value
        key = state_key(outcome.state.call_id, outcome.state.stream_id)
        if outcome.finished:
            table.pop(key.encode(), None)
            recent_streams.pop(key, None)
        else:
            outcome.state.partition = partition
            table[key.encode()] = outcome.state.to_bytes()
            recent_streams[key] = partition
        flush_requested.pop(key, None)
        metrics.GAP_CHUNKS.inc(outcome.gaps_filled)
        metrics.DUPLICATE_CHUNKS.inc(outcome.duplicates)

    async def handle_chunk(event) -> None:
        metrics.CHUNKS.inc()
        try:
            chunk = codec.decode_chunk(event.message.value)
        except DecodeError as error:
            await dead_letter(event, error.reason, str(error))
            return
        state = load_state(chunk.call_id, chunk.stream_id) or assembler.new_state(chunk.call_id, chunk.stream_id)
        try:
            outcome = assembler.accept(state, chunk, now_ms(), read_block)
        except BadChunk as error:
            await dead_letter(event, error.reason, f"call {chunk.call_id} stream {chunk.stream_id}: {error}")
            return
        except Exception as error:  # a bug on odd input must not stop the partition: park the record
            log.exception("processing failed for call %s stream %s", chunk.call_id, chunk.stream_id)
            await dead_letter(event, "processing_error", f"{type(error).__name__}: {error}")
            return
        await publish(outcome)
        save(outcome, event.message.partition)

    async def handle_flush(event) -> None:
        call_id = event.message.key.decode()
        stream_id = event.message.value.decode()
        state = load_state(call_id, stream_id)
        if state is None or not EndpointState.from_bytes(state.endpoint).is_open:
            return
        if now_ms() - state.last_received_ms < settings.idle_flush_s * 1000:
            return  # audio came back after the request was sent
        outcome = assembler.flush_idle(state, now_ms(), read_block)
        await publish(outcome)
        save(outcome, event.message.partition)

    @app.agent(source, concurrency=1)
    async def process(stream):
        async for event in stream.events():
            if event.message.topic == control_topic(settings):
                await handle_flush(event)
            else:
                await handle_chunk(event)

    control = app.topic(control_topic(settings))

    last_scan = [0.0]

    def rescan_table() -> None:
        """Find streams recovered from the changelog (after a restart or a rebalance)."""
        for raw_key, raw in table.items():
            if raw_key.startswith(b"S|") and raw:
                recent_streams.setdefault(raw_key.decode(), StreamState.from_bytes(raw).partition)

    @app.timer(interval=1.0)
    async def flush_idle_streams() -> None:
        """Ask the stream's own partition to flush streams whose producer went quiet."""
        if time.monotonic() - last_scan[0] > 30:
            last_scan[0] = time.monotonic()
            rescan_table()
        deadline = now_ms() - settings.idle_flush_s * 1000
        metrics.OPEN_STREAMS.set(len(recent_streams))
        for key, partition in list(recent_streams.items()):
            raw = table.get(key.encode()) if partition in assigned_partitions() else None
            if raw is None:
                recent_streams.pop(key, None)
                continue
            state = StreamState.from_bytes(raw)
            if state.last_received_ms > deadline or not EndpointState.from_bytes(state.endpoint).is_open:
                continue
            if time.monotonic() - flush_requested.get(key, 0) < settings.idle_flush_s:
                continue
            flush_requested[key] = time.monotonic()
            await control.send(key=state.call_id.encode(), value=state.stream_id.encode(), partition=partition)

    def assigned_partitions() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == settings.audio_topic}

    @app.page("/health")
    async def health(web, request):
        return web.json({"status": "ok", "app": settings.app_id, "partitions": sorted(assigned_partitions()),
                         "open_streams": len(recent_streams), "models": router.describe()})

    @app.page("/models")
    async def models_page(web, request):
        return web.json(router.describe())

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(metrics.render(), content_type="text/plain; version=0.0.4")

    return app
