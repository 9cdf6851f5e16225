"""Publishing a call's settings (the `CallSettings` record: languages, vocabulary, redaction) to
the compacted call-settings topic, keyed by call ID: the library under `callstt call-settings`,
and what a call platform does before (or while) it streams the call's audio.

    publish_call_settings(settings, CallSettings(call_id="c1", languages=("vi", "en")))
    publish_call_settings(settings, None, call_id="c1")   # a tombstone: the worker's defaults again

The worker reads the topic in the same consumer group and partitions as the audio (both keyed
by call ID, murmur2), so a call's settings reach the worker that cuts its utterances and apply
to the utterances that meet the model after them.
"""

from __future__ import annotations

import time

from confluent_kafka import Producer

from callstt.schemas.codec import AvroCodec
from callstt.schemas.records import CallSettings, StreamSettings
from callstt.streams.client.kafka import RELIABLE_PRODUCER, avro_codec, confluent_config
from callstt.streams.client.publishing import ClientErrors, PublishError, check_topic
from callstt.streams.settings import Settings


def split_list(text: str | None) -> tuple[str, ...] | None:
    """"a, b" -> ("a", "b"); None stays None (not set); "" -> () (set to nothing)."""
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


def stream_options(pairs: list[str], what: str) -> dict[str, str]:
    """["agent=en", "caller=vi,en"] -> {"agent": "en", "caller": "vi,en"}."""
    options = {}
    for pair in pairs:
        stream_id, sep, value = pair.partition("=")
        if not sep or not stream_id.strip():
            raise ValueError(f"{what} {pair!r}: use STREAM=VALUE")
        options[stream_id.strip()] = value
    return options


def build_call_settings(call_id: str, languages: str | None = None, hotwords: str | None = None,
                        initial_prompt: str | None = None, redact: str | None = None,
                        stream_languages: dict[str, str] | None = None, stream_hotwords: dict[str, str] | None = None,
                        stream_prompts: dict[str, str] | None = None, translate_to: str | None = None,
                        stream_translate_to: dict[str, str] | None = None,
                        translate_interims: bool | None = None, voice: str | None = None,
                        stream_voices: dict[str, str] | None = None) -> CallSettings:
    """A CallSettings record from command-line style values (comma-separated lists; None: not set)."""
    stream_languages, stream_hotwords, stream_prompts = stream_languages or {}, stream_hotwords or {}, stream_prompts or {}
    stream_translate_to, stream_voices = stream_translate_to or {}, stream_voices or {}
    streams = tuple(StreamSettings(stream_id=stream_id, languages=split_list(stream_languages.get(stream_id)),
                                   hotwords=split_list(stream_hotwords.get(stream_id)),
                                   initial_prompt=stream_prompts.get(stream_id),
                                   translate_to=split_list(stream_translate_to.get(stream_id)),
                                   voice=stream_voices.get(stream_id))
                    for stream_id in sorted({*stream_languages, *stream_hotwords, *stream_prompts, *stream_translate_to,
                                             *stream_voices}))
    return CallSettings(call_id=call_id, languages=split_list(languages), hotwords=split_list(hotwords),
                        initial_prompt=initial_prompt, redact=split_list(redact), streams=streams,
                        updated_ts_ms=int(time.time() * 1000), translate_to=split_list(translate_to),
                        translate_interims=translate_interims, voice=voice)


def publish_call_settings(settings: Settings, record: CallSettings | None, call_id: str | None = None,
                          timeout: float = 10.0, codec: AvroCodec | None = None) -> None:
    """Publish a call's settings (None: a tombstone for `call_id`), acknowledged by the broker
    (acks=all); raises PublishError with the reason when the broker or the topic is missing."""
    topic = settings.call_settings_topic
    call_id = record.call_id if record is not None else call_id
    if not call_id:
        raise ValueError("a call ID is needed")
    errors = ClientErrors()
    producer = Producer({**confluent_config(settings), **RELIABLE_PRODUCER, **errors.config()})
    check_topic(producer, settings.kafka_bootstrap_servers, topic, timeout, errors, "Write",
                confluent_config(settings))
    value = None if record is None else (codec or avro_codec(settings)).encode_call_settings(
        record, topic)
    delivered: list = []
    producer.produce(topic, key=call_id.encode(), value=value, on_delivery=lambda error, _: delivered.append(error))
    if producer.flush(timeout) or not delivered:
        raise PublishError(f"the call settings for {call_id} were not acknowledged within {timeout:g}s")
    if delivered[0] is not None:
        raise PublishError(f"publishing the call settings for {call_id} failed: {delivered[0].str()}")
