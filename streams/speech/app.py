"""The speech agent's Faust app: Translation events in, the translated legs' speech out.

A downstream agent (streams/downstream.py: its own consumer group `<app id>-speak`, so speech
scales apart from transcription and translation; one record at a time, each acknowledged before
the next, a failure retried, never skipped; dead letters; /health and /metrics). For each translation worth speaking (OK or
PASSTHROUGH, with text), each sentence is synthesized (its language's voice: models/voices.py,
Piper where configured, espeak-ng otherwise) in a thread
and its AudioChunk events published on the speech topic (CALLSTT_SPEECH_TOPIC, key = call ID)
before the next sentence is synthesized; all acknowledged before the next record is taken, so a
crash repeats a translation's chunks (the same sequence numbers), never skips them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
from prometheus_client import CollectorRegistry, Counter, Histogram

from schemas.codec import AvroCodec
from streams.downstream import DeadLetters, downstream_app, register_pages, run_downstream, until_done
from streams.settings import Settings
from streams.speech.core import leg, speech_chunks, worth_speaking

log = logging.getLogger("callstt.speaker")

REGISTRY = CollectorRegistry(auto_describe=True)
SPOKEN = Counter("callstt_speech_chunks_total", "Synthesized audio chunks published, by language", ["language"],
                 registry=REGISTRY)
RECORDS = Counter("callstt_speaker_records_total", "Translations read: spoken, skipped (nothing to say), "
                  "dead letters", ["kind"], registry=REGISTRY)
FIRST_CHUNK = Histogram("callstt_translation_to_first_speech_seconds",
                        "From a translation's production to its first synthesized chunk being acknowledged",
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5), registry=REGISTRY)
FAILURES = Counter("callstt_speaker_failures_total", "Records whose handling failed and was retried",
                   registry=REGISTRY)


def create_speech_app(settings: Settings, load_voices) -> faust.App:
    """`load_voices()`: the models.voices.VoiceRouter (loaded in the synthesis thread at start;
    /health answers 503 meanwhile)."""
    app = downstream_app(settings, "speak", settings.speaker_web_port)
    source = app.topic(settings.translation_topic, partitions=settings.topic_partitions)
    speech = app.topic(settings.speech_topic)
    dead_letters = DeadLetters(app, settings, RECORDS.labels("dead_letter"), log)
    codec = AvroCodec(settings.schema_registry_url or None)
    synthesis_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="speak")
    loaded: dict[str, Any] = {}
    ready = asyncio.Event()

    @app.task
    async def load() -> None:
        loaded["voices"] = await asyncio.get_running_loop().run_in_executor(synthesis_thread, load_voices)
        ready.set()
        log.info("voices loaded: %s", loaded["voices"].describe())

    async def speak(message: Any) -> None:
        translation = await dead_letters.decode(message, codec.decode_translation)
        if translation is None:
            return
        if not worth_speaking(translation):
            RECORDS.labels("skipped").inc()
            return
        RECORDS.labels("spoken").inc()
        loop, sentences, first = asyncio.get_running_loop(), speech_chunks(translation, loaded["voices"].synthesize), True
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
        await ready.wait()  # records wait in the consumer meanwhile
        async for event in stream.events():  # one at a time: acknowledged before the next is taken
            await until_done(speak, event.message, log, FAILURES)

    def health() -> dict[str, Any] | str:  # 503 while the voices load
        return loaded["voices"].describe() if ready.is_set() else "voices loading"

    register_pages(app, "callstt-speaker", REGISTRY, health)
    return app


def run_speaker(settings: Settings) -> None:
    from models.voices import load_voices

    run_downstream(settings, create_speech_app(settings, lambda: load_voices(settings.speech_voices)), "speaker")
