"""The speech agent's Faust app: Translation events in, the translated legs' speech out.

A downstream agent (streams/downstream.py: its own consumer group `<app id>-speak`, so speech
scales apart from transcription and translation; one record at a time, each acknowledged before
the next, a failure retried, never skipped; dead letters; /health and /metrics; the calls'
settings in a table). For each translation worth speaking (OK or PASSTHROUGH, with text), each
sentence is synthesized in a thread (models/voices/backends.py: the voice the call's settings choose
among the target language's, else the language's default: Piper where configured, espeak-ng
otherwise) and its AudioChunk events published on the speech topic (CALLSTT_SPEECH_TOPIC, key =
call ID) before the next sentence is synthesized; all acknowledged before the next record is taken, so a
crash repeats a translation's chunks (the same sequence numbers), never skips them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from prometheus_client import CollectorRegistry, Counter, Histogram

from callstt.models.voices.backends import load_voices
from callstt.streams.agents import SPEAKER
from callstt.streams.downstream import AgentMetrics, AgentParts, build_agent_app, run_downstream
from callstt.streams.settings import Settings
from callstt.streams.speech.core import leg, speech_chunks, worth_speaking

log = logging.getLogger("callstt.speaker")

REGISTRY = CollectorRegistry(auto_describe=True)
SPOKEN = Counter("callstt_speech_chunks_total", "Synthesized audio chunks published, by language and voice",
                 ["language", "voice"], registry=REGISTRY)
FIRST_CHUNK = Histogram("callstt_translation_to_first_speech_seconds",
                        "From a translation's production to its first synthesized chunk being acknowledged",
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5), registry=REGISTRY)
METRICS = AgentMetrics.create(REGISTRY, SPEAKER, "Records read: translations spoken, skipped (nothing to say), "
                                                 "call settings (set, cleared), dead letters")


def create_speech_app(settings: Settings, load) -> faust.App:
    """`load()`: the models.voices.backends.VoiceRouter (loaded in the synthesis thread at start;
    /health answers 503 meanwhile)."""
    return build_agent_app(settings, SPEAKER, REGISTRY, METRICS, load, speech_handler)


def speech_handler(parts: AgentParts):
    """One translation record: its sentences spoken in the call's voice, each sentence's chunks
    published and acknowledged before the next sentence is synthesized."""
    settings, codec = parts.settings, parts.codec
    speech = parts.app.topic(settings.speech_topic)

    async def speak(message: Any) -> None:
        translation = await parts.dead_letters.decode(message, codec.decode_translation)
        if translation is None:
            return
        if not worth_speaking(translation):
            METRICS.records.labels("skipped").inc()
            return
        METRICS.records.labels("spoken").inc()
        options = parts.call_settings.get(message.key)
        voice = parts.loaded.value.voice_for(translation.target_language,
                                             options.voice_for(translation.stream_id) if options else None)
        loop, sentences, first = asyncio.get_running_loop(), speech_chunks(translation, voice.speak), True
        while (chunks := await loop.run_in_executor(parts.thread, next, sentences, None)) is not None:
            sent = [await speech.send(key=translation.call_id.encode(),
                                      value=codec.encode_chunk(chunk, settings.speech_topic)) for chunk in chunks]
            for acknowledged in sent:
                await acknowledged
            SPOKEN.labels(translation.target_language, voice.id).inc(len(chunks))
            if first:
                FIRST_CHUNK.observe(max(time.time() - translation.produced_ts_ms / 1000, 0))
                first = False
        log.info("speech call=%s leg=%s #%d [%s]: %s", translation.call_id, leg(translation),
                 translation.utterance_index, voice.id, translation.text)

    return speak


def run_speaker(settings: Settings) -> None:
    run_downstream(settings, create_speech_app(settings, lambda: load_voices(settings.speech_voices)), SPEAKER)
