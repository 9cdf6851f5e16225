"""The speech agent's Faust app: Translation events in, the translated legs' speech out.

Its own consumer group (`<app id>-speak`), so speech scales apart from transcription and
translation. For each translation worth speaking (OK or PASSTHROUGH, with text), each sentence
is synthesized (espeak-ng, models/synth.py) in a thread and its AudioChunk events published on
the speech topic (CALLSTT_SPEECH_TOPIC, key = call ID) before the next sentence is
synthesized; all acknowledged before the next record is taken, so a crash repeats a
translation's chunks (the same sequence numbers), never skips them. Undecodable records go to
the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from models.synth import synthesize
from schemas.codec import AvroCodec, DecodeError
from streams.client.kafka import faust_broker_config
from streams.settings import Settings
from streams.speech.core import leg, speech_chunks, worth_speaking
from streams.worker.agent import dead_letter_headers

log = logging.getLogger("callstt.speaker")

REGISTRY = CollectorRegistry(auto_describe=True)
SPOKEN = Counter("callstt_speech_chunks_total", "Synthesized audio chunks published, by language", ["language"],
                 registry=REGISTRY)
RECORDS = Counter("callstt_speaker_records_total", "Translations read: spoken, skipped (nothing to say), "
                  "dead letters", ["kind"], registry=REGISTRY)
FIRST_CHUNK = Histogram("callstt_translation_to_first_speech_seconds",
                        "From a translation's production to its first synthesized chunk being acknowledged",
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5), registry=REGISTRY)


def create_speech_app(settings: Settings) -> faust.App:
    app = faust.App(
        f"{settings.app_id}-speak", **faust_broker_config(settings),
        datadir=str(Path(settings.data_dir) / "speak"),
        topic_partitions=settings.topic_partitions, topic_replication_factor=settings.topic_replication,
        key_serializer="raw", value_serializer="raw", topic_disable_leader=True,
        web_host=settings.web_host, web_bind=settings.web_host, web_port=settings.speaker_web_port, web_enabled=True)
    source = app.topic(settings.translation_topic, partitions=settings.topic_partitions)
    speech, dead_letters = app.topic(settings.speech_topic), app.topic(settings.dead_letter_topic)
    codec = AvroCodec(settings.schema_registry_url or None)
    synthesis_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speak")

    async def speak(message: Any) -> None:
        try:
            translation = codec.decode_translation(message.value)
        except DecodeError as error:
            RECORDS.labels("dead_letter").inc()
            log.warning("dead-letter %s: %s (offset %s)", error.reason, error, message.offset)
            await (await dead_letters.send(key=message.key, value=message.value,
                                           headers=dead_letter_headers(message, error.reason, str(error))))
            return
        if not worth_speaking(translation):
            RECORDS.labels("skipped").inc()
            return
        RECORDS.labels("spoken").inc()
        loop, sentences, first = asyncio.get_running_loop(), speech_chunks(translation, synthesize), True
        while (chunks := await loop.run_in_executor(synthesis_thread, next, sentences, None)) is not None:
            sent = [await speech.send(key=translation.call_id.encode(),
                                      value=codec.encode_chunk(chunk, settings.speech_topic)) for chunk in chunks]
            for acknowledged in sent:
                await acknowledged
            SPOKEN.labels(translation.target_language).inc(len(chunks))
            if first:
                FIRST_CHUNK.observe(max(time.time() - translation.produced_ts_ms / 1000, 0))
                first = False
        log.info("speech call=%s leg=%s #%d: %s", translation.call_id, leg(translation),
                 translation.utterance_index, translation.text)

    @app.agent(source, concurrency=1)
    async def speak_agent(stream):
        async for event in stream.events():  # one at a time: acknowledged before the next is taken
            await speak(event.message)

    @app.page("/health")
    async def health(web, request):
        return web.json({"service": "callstt-speaker", "status": "ok"})

    @app.page("/metrics")
    async def metrics_page(web, request):
        return web.bytes(generate_latest(REGISTRY), content_type="text/plain; version=0.0.4")

    return app


def run_speaker(settings: Settings) -> None:
    from streams.client.topics import ensure_topics

    ensure_topics(settings)
    (Path(settings.data_dir) / "speak").mkdir(parents=True, exist_ok=True)  # Faust expects its data folder
    worker = faust.Worker(create_speech_app(settings), loglevel=settings.log_level.upper(), redirect_stdouts=False)
    log.info("speaker web pages on http://%s:%d/ (health: /health, metrics: /metrics)", settings.web_host,
             settings.speaker_web_port)
    worker.execute_from_commandline()
