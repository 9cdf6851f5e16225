"""What the live page shows of the chain after this worker: each recent transcript's translations
and a player for its synthesized speech (streams/translation/, streams/speech/).

A group-less consumer (never in a consumer group, nothing committed) follows the translation
and speech topics from their end, on the partitions whose numbers are this worker's audio
partitions: every topic of the project is keyed by call ID, with the same partition count and
murmur2, so the calls this worker transcribes are exactly there, and a worker reads only its
own calls' translations and speech however many workers there are. When the worker's
assignment changes, so do the partitions it follows. Speech is kept for the most recent
utterances only (`SpeechClips`), and served as WAV on demand.
"""

from __future__ import annotations

import asyncio
import io
import logging
import wave
from collections import OrderedDict
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.schemas.codec import AvroCodec, DecodeError
from callstt.schemas.records import AudioChunk, spoken_utterance
from callstt.streams.client.kafka import aiokafka_config, avro_codec
from callstt.streams.worker.faust_compat import refresh_metadata

log = logging.getLogger("callstt.worker")

ClipKey = tuple[str, str, int]  # call ID, leg ("caller>pt"), utterance index


class SpeechClips:
    """The synthesized speech of the `max_utterances` most recent utterances, chunk by chunk (a
    repeated chunk, after a speaker's restart, replaces its first copy), at most `max_seconds`
    each: what the live page's players play."""

    def __init__(self, max_utterances: int = 50, max_seconds: float = 60.0) -> None:
        self.max_utterances = max_utterances
        self.max_chunks_bytes = int(max_seconds * SAMPLE_RATE * 2)
        self.clips: OrderedDict[ClipKey, dict[int, bytes]] = OrderedDict()

    def add(self, chunk: AudioChunk) -> ClipKey | None:
        """Keep a 16 kHz PCM chunk of a translated leg; returns its clip's key (None: not kept)."""
        if chunk.sample_rate != SAMPLE_RATE or chunk.encoding.value != "PCM_S16LE" or ">" not in chunk.stream_id:
            return None
        key = spoken_utterance(chunk)
        clip = self.clips.setdefault(key, {})
        self.clips.move_to_end(key)
        if sum(map(len, clip.values())) + len(chunk.payload) <= self.max_chunks_bytes:
            clip[chunk.seq] = chunk.payload
        while len(self.clips) > self.max_utterances:
            self.clips.popitem(last=False)
        return key

    def seconds(self, key: ClipKey) -> float:
        return round(sum(map(len, self.clips.get(key, {}).values())) / (2 * SAMPLE_RATE), 2)

    def wav(self, key: ClipKey) -> bytes | None:
        """The clip as a WAV file (16 kHz, 16-bit mono), chunks in sequence order; None: not kept."""
        clip = self.clips.get(key)
        if not clip:
            return None
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(SAMPLE_RATE)
            wav.writeframes(b"".join(clip[seq] for seq in sorted(clip)))
        return out.getvalue()


async def follow_downstream(status: Any, clips: SpeechClips) -> None:
    """Feed `status` (streams/worker/web.py WorkerStatus) the translations and `clips` the speech of
    this worker's calls, until cancelled."""
    settings = status.settings
    codec = avro_codec(settings)
    topics = (settings.translation_topic, settings.speech_topic)
    consumer = AIOKafkaConsumer(**aiokafka_config(settings), enable_auto_commit=False)
    await consumer.start()
    following: set[TopicPartition] = set()
    try:
        while True:
            following = await follow_partitions(consumer, topics, status.assigned_partitions(), following)
            if not following:
                await asyncio.sleep(2.0)
                continue
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                for record in records:
                    take_record(tp.topic == settings.speech_topic, record.value, codec, status, clips)
    finally:
        await consumer.stop()


async def follow_partitions(consumer: AIOKafkaConsumer, topics: tuple[str, str], partitions: set[int],
                            following: set[TopicPartition]) -> set[TopicPartition]:
    """Assign the existing partitions numbered `partitions` of `topics` (new ones from their end)."""
    wanted = {TopicPartition(topic, p) for topic in topics for p in partitions
              if p in (consumer.partitions_for_topic(topic) or set())}
    if len(wanted) < len(topics) * len(partitions):
        await refresh_metadata(consumer)  # a topic created after the worker started
    if wanted != following:
        consumer.assign(sorted(wanted))
        if wanted - following:
            await consumer.seek_to_end(*(wanted - following))
    return wanted


def take_record(is_speech: bool, value: bytes | None, codec: AvroCodec, status: Any, clips: SpeechClips) -> None:
    """One record of either topic into the live page's view; one that does not decode is not ours
    to judge (the agents dead-letter their own input) and is skipped."""
    try:
        if is_speech:
            key = clips.add(codec.decode_chunk(value or b""))
            if key is not None:
                status.on_speech(key, clips.seconds(key))
        else:
            status.on_translation(codec.decode_translation(value or b""))
    except DecodeError as error:
        log.debug("live page: a record that does not decode: %s", error)
