"""The pipeline core built from the settings: the one place that reads a Settings object for it,
so the core itself (streams/core/) takes typed configuration and knows neither the settings nor
the Kafka clients.

    pipeline = build_pipeline(settings)                 # the worker, replay, POST /transcribe, the bench
    config = pipeline_config(settings, model_version="base-int8")
"""

from __future__ import annotations

from typing import Any

from callstt.models.audio.endpointing import EndpointConfig
from callstt.models.text.guard import GuardConfig
from callstt.models.text.vocabulary import Vocabulary
from callstt.streams.client.kafka import avro_codec
from callstt.streams.core.assembly import AssemblyConfig
from callstt.streams.core.call_options import CallDefaults
from callstt.streams.core.pipeline import Pipeline, PipelineConfig
from callstt.streams.core.redaction import RedactionConfig, RedactionConfigError
from callstt.streams.settings import Settings, SettingsError


def build_pipeline(settings: Settings, **overrides: Any) -> Pipeline:
    """The core with these settings (`overrides`: PipelineConfig fields, e.g. model_version) and
    the settings' Avro codec (embedded schema ids, or the registry's)."""
    return Pipeline(pipeline_config(settings, **overrides), avro_codec(settings))


def pipeline_config(settings: Settings, **overrides: Any) -> PipelineConfig:
    config = PipelineConfig(
        assembly=AssemblyConfig(endpoint=EndpointConfig(min_silence_ms=settings.min_silence_ms,
                                                        max_utterance_ms=settings.max_utterance_ms,
                                                        speculate_ms=settings.speculate_ms,
                                                        interim_ms=settings.partial_interval_ms)),
        partial_window_s=settings.partial_window_s,
        latency_budget_ms=settings.latency_budget_ms, model_lanes=settings.model_lanes,
        inference_mode=settings.inference_mode, inference_batch_size=settings.inference_batch_size,
        pack_window_s=settings.pack_window_s, pack_gap_s=settings.pack_gap_s, min_window_s=settings.min_window_s,
        model_version=settings.model_version_label, idle_flush_ms=settings.idle_flush_s * 1000,
        call_settings_topic=settings.call_settings_topic,
        defaults=CallDefaults(
            languages=settings.language_list,
            vocabulary=Vocabulary(settings.hotword_list, settings.initial_prompt),
            redaction=worker_redaction(settings)),
        guard=GuardConfig(vad_threshold=settings.guard_vad_threshold, min_speech_ratio=settings.guard_min_speech_ratio,
                          no_speech_prob=settings.guard_no_speech_prob,
                          max_compression_ratio=settings.guard_max_compression_ratio,
                          ngram_repeats=settings.guard_ngram_repeats, word_run=settings.guard_word_run,
                          phrase_max_speech_ratio=0.5 if settings.guard_phrases else 0.0))
    return config.with_overrides(**overrides)


def worker_redaction(settings: Settings) -> RedactionConfig:
    """CALLSTT_REDACT with its patterns and phone region; a bad value fails the start in one line."""
    try:
        return RedactionConfig.parse(settings.redact, settings.redact_patterns, settings.phone_region)
    except RedactionConfigError as error:
        raise SettingsError(f"CALLSTT_REDACT / CALLSTT_REDACT_PATTERNS / CALLSTT_PHONE_REGION: {error}") from None
