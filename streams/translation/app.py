"""The translation agent's Faust app: transcripts in, Translation events out.

A downstream agent (streams/downstream.py: its own consumer group `<app id>-translate`, so
translation scales apart from transcription; one record at a time, each acknowledged before the
next, a failure retried, never skipped; dead letters; /health and /metrics). It reads the
transcript topic, the partial (interim) transcript topic and the call-settings topic (all keyed
by call ID with the same partition count, so a call's settings and transcripts meet in one
partition) and keeps each call's settings in a table (its changelog acknowledged before the next
record). For each final transcript: the target languages (streams/translation/core.py), the
translations in a thread (the backends of models/translation/backends.py), the events published and
acknowledged before the next record is taken, so a crash repeats a transcript's translations
(same translation_id), never skips them. For each interim transcript of a call that asks for it
(`translate_interims`): its stable words, when they grew, to the partial translation topic.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from prometheus_client import CollectorRegistry, Counter, Histogram

from callstt.models.translation.backends import load_translation_router
from callstt.streams.agents import TRANSLATOR
from callstt.streams.downstream import AgentMetrics, AgentParts, build_agent_app, run_downstream
from callstt.streams.settings import Settings
from callstt.streams.translation.core import StablePrefixes, interims_wanted, targets_for, translate

log = logging.getLogger("callstt.translator")

REGISTRY = CollectorRegistry(auto_describe=True)
TRANSLATIONS = Counter("callstt_translations_total", "Translation events published, by status and target language",
                       ["status", "target"], registry=REGISTRY)
TRANSLATION_SECONDS = Histogram("callstt_translation_seconds", "Backend time per translation",
                                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2), registry=REGISTRY)
TRANSCRIPT_TO_TRANSLATION = Histogram(
    "callstt_transcript_to_translation_seconds", "From a transcript's production to its translation's acknowledgement",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5), registry=REGISTRY)
INTERIM_TRANSLATIONS = Counter("callstt_interim_translations_total", "Interim translations published (the stable "
                               "words of interim transcripts), by target language", ["target"], registry=REGISTRY)
METRICS = AgentMetrics.create(REGISTRY, TRANSLATOR, "Records read: transcripts (final, interim), call settings "
                                                    "(set, cleared), dead letters")


def create_translation_app(settings: Settings, load) -> faust.App:
    """`load()`: the models.translation.backends.TranslationRouter (loaded in the agent's thread
    at start; /health answers 503 meanwhile)."""
    return build_agent_app(settings, TRANSLATOR, REGISTRY, METRICS, load, translation_handler)


def translation_handler(parts: AgentParts):
    """One transcript record: its translations into the call's target languages, published and
    acknowledged (final ones to the translation topic; interim ones, when their stable words grew
    and the call asks for them, to the partial translation topic)."""
    settings, codec = parts.settings, parts.codec
    outputs = {True: parts.app.topic(settings.translation_topic),
               False: parts.app.topic(settings.partial_translation_topic)}
    prefixes = StablePrefixes()

    async def translate_transcript(message: Any) -> None:
        transcript = await parts.dead_letters.decode(message, codec.decode_transcript)
        if transcript is None:
            return
        METRICS.records.labels("final" if transcript.is_final else "interim").inc()
        options = parts.call_settings.get(message.key)
        if transcript.is_final:
            prefixes.close(transcript)
        elif not (interims_wanted(options, settings.translate_interims) and prefixes.grew(transcript)):
            return
        targets = targets_for(transcript, options, settings.translate_to_list)
        if targets:
            events = await asyncio.get_running_loop().run_in_executor(parts.thread, translate, transcript, targets,
                                                                      parts.loaded.value)
            await publish(events, outputs[transcript.is_final])

    async def publish(events: list, topic: Any) -> None:
        name = topic.get_topic_name()
        sent = [(event, await topic.send(key=event.call_id.encode(), value=codec.encode_translation(event, name)))
                for event in events]
        for event, acknowledged in sent:
            await acknowledged
            observe(event)

    return translate_transcript


def observe(event: Any) -> None:
    """A translation acknowledged: counted, timed, logged."""
    if not event.is_final:
        INTERIM_TRANSLATIONS.labels(event.target_language).inc()
        return
    TRANSLATIONS.labels(event.status.value.lower(), event.target_language).inc()
    TRANSLATION_SECONDS.observe(event.translation_ms / 1000)
    TRANSCRIPT_TO_TRANSLATION.observe(max(event.produced_ts_ms - event.transcript_produced_ts_ms, 0) / 1000)
    log.info("translation call=%s stream=%s #%d %s->%s [%s] %s", event.call_id, event.stream_id,
             event.utterance_index, event.source_language, event.target_language, event.status.value, event.text)


def run_translator(settings: Settings) -> None:
    app = create_translation_app(settings, lambda: load_translation_router(settings.translation_backends,
                                                                          ct2_dir=settings.ct2_translation_dir))
    run_downstream(settings, app, TRANSLATOR)
