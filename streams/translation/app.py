"""The translation agent's Faust app: final transcripts in, Translation events out.

Its own consumer group (`<app id>-translate`), so translation scales apart from transcription.
It reads the transcript topic and the call-settings topic (both keyed by call ID with the same
partition count, so a call's settings and transcripts meet in one partition) and keeps each
call's settings in a table. For each final transcript (interims are left to live views): the
target languages (streams/translation/core.py), the translations in a thread (the backends of
models/translation.py), the events published and acknowledged before the next record is
taken, so a crash repeats a transcript's translations (same translation_id), never skips them.
Undecodable records go to the dead-letter topic with their reason, and the agent goes on.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from schemas.codec import AvroCodec, DecodeError
from streams.client.kafka import faust_broker_config
from streams.settings import Settings
from streams.translation.core import targets_for, translate
from streams.worker.agent import dead_letter_headers

log = logging.getLogger("callstt.translator")

REGISTRY = CollectorRegistry(auto_describe=True)
TRANSLATIONS = Counter("callstt_translations_total", "Translation events published, by status and target language",
                       ["status", "target"], registry=REGISTRY)
TRANSLATION_SECONDS = Histogram("callstt_translation_seconds", "Backend time per translation",
                                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2), registry=REGISTRY)
TRANSCRIPT_TO_TRANSLATION = Histogram(
    "callstt_transcript_to_translation_seconds", "From a transcript's production to its translation's acknowledgement",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5), registry=REGISTRY)
RECORDS = Counter("callstt_translator_records_total", "Records read: transcripts (final, interim), call settings "
                  "(set, cleared), dead letters", ["kind"], registry=REGISTRY)


def translator_faust_app(settings: Settings) -> faust.App:
    """Its own app id (so its own consumer group), data folder and web port."""
    return faust.App(
        f"{settings.app_id}-translate", **faust_broker_config(settings),
        store="rocksdb://", datadir=str(Path(settings.data_dir) / "translate"),
        topic_partitions=settings.topic_partitions, topic_replication_factor=settings.topic_replication,
        key_serializer="raw", value_serializer="raw", topic_disable_leader=True,
        web_host=settings.web_host, web_bind=settings.web_host, web_port=settings.translator_web_port,
        web_enabled=True)


def create_translation_app(settings: Settings, load_router) -> faust.App:
    app = translator_faust_app(settings)
    source = app.topic(settings.transcript_topic, settings.call_settings_topic, partitions=settings.topic_partitions)
    translations, dead_letters = app.topic(settings.translation_topic), app.topic(settings.dead_letter_topic)
    call_settings = app.Table("call-settings", default=None, partitions=settings.topic_partitions,
                              key_type=bytes, value_type=bytes)
    codec = AvroCodec(settings.schema_registry_url or None)
    backend_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="translate")
    loaded: dict[str, Any] = {}
    ready = asyncio.Event()

    @app.task
    async def load_backends() -> None:
        loaded["router"] = await asyncio.get_running_loop().run_in_executor(backend_thread, load_router)
        ready.set()
        log.info("translation backends loaded: %s", loaded["router"].describe())

    async def dead_letter(message: Any, reason: str, detail: str) -> None:
        RECORDS.labels("dead_letter").inc()
        log.warning("dead-letter %s: %s (topic %s offset %s)", reason, detail, message.topic, message.offset)
        await (await dead_letters.send(key=message.key, value=message.value,
                                       headers=dead_letter_headers(message, reason, detail)))

    async def keep_settings(message: Any) -> None:
        if message.value is None:
            call_settings.pop(message.key, None)
            RECORDS.labels("settings_cleared").inc()
            return
        try:
            codec.decode_call_settings(message.value)
        except DecodeError as error:
            await dead_letter(message, error.reason, str(error))
            return
        call_settings[message.key] = message.value
        RECORDS.labels("settings_set").inc()

    async def translate_transcript(message: Any) -> None:
        try:
            transcript = codec.decode_transcript(message.value)
        except DecodeError as error:
            await dead_letter(message, error.reason, str(error))
            return
        if not transcript.is_final:
            RECORDS.labels("interim").inc()
            return
        RECORDS.labels("final").inc()
        raw = call_settings.get(message.key) if message.key else None
        targets = targets_for(transcript, codec.decode_call_settings(raw) if raw else None, settings.translate_to_list)
        if not targets:
            return
        events = await asyncio.get_running_loop().run_in_executor(backend_thread, translate, transcript, targets,
                                                                  loaded["router"])
        sent = [(event, await translations.send(key=transcript.call_id.encode(),
                                                value=codec.encode_translation(event, settings.translation_topic)))
                for event in events]
        for event, acknowledged in sent:
            await acknowledged
            TRANSLATIONS.labels(event.status.value.lower(), event.target_language).inc()
            TRANSLATION_SECONDS.observe(event.translation_ms / 1000)
            TRANSCRIPT_TO_TRANSLATION.observe(max(event.produced_ts_ms - event.transcript_produced_ts_ms, 0) / 1000)
            log.info("translation call=%s stream=%s #%d %s->%s [%s] %s", event.call_id, event.stream_id,
                     event.utterance_index, event.source_language, event.target_language, event.status.value,
                     event.text)

    @app.agent(source, concurrency=1)
    async def translate_agent(stream):
        await ready.wait()  # records wait in the consumer meanwhile
        async for event in stream.events():  # one at a time: acknowledged before the next is taken
            message = event.message
            if message.topic == settings.call_settings_topic:
                await keep_settings(message)
            else:
                await translate_transcript(message)

    register_pages(app, ready, loaded)
    return app


def register_pages(app: faust.App, ready: asyncio.Event, loaded: dict[str, Any]) -> None:
    """/health (503 while the backends load) and /metrics (this agent's own registry)."""

    @app.page("/health")
    async def health(web, request):
        if not ready.is_set():
            return web.json({"service": "callstt-translator", "status": "starting",
                              "reason": "translation backends loading"}, status=503)
        return web.json({"service": "callstt-translator", "status": "ok", **loaded["router"].describe()})

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(generate_latest(REGISTRY), content_type="text/plain; version=0.0.4")


def run_translator(settings: Settings) -> None:
    from models.translation import load_translation_router
    from streams.client.topics import ensure_topics

    ensure_topics(settings)
    (Path(settings.data_dir) / "translate").mkdir(parents=True, exist_ok=True)  # Faust expects its data folder
    app = create_translation_app(settings, lambda: load_translation_router(settings.translation_backends))
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), redirect_stdouts=False)
    log.info("translator web pages on http://%s:%d/ (health: /health, metrics: /metrics)", settings.web_host,
             settings.translator_web_port)
    worker.execute_from_commandline()
