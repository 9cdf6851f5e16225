"""The gateway's Kafka clients: one producer (audio, call settings, stream marks), one view of
the stream marks, one follower of the topics it sends back, one reader for resumes.

* `GatewayKafka.publish`: a chunk, keyed by call ID (murmur2, as every producer of the project),
  acks=all and idempotent; the returned future completes when the broker has it.
* `MarkTable`: every gateway reads the whole gateway-sessions topic (compacted; one small record
  per stream) into a dict, so a reconnection to any gateway finds its stream's mark. `latest`
  first reads the mark's partition up to the end it has now, so a mark written a moment ago by
  a gateway that died is seen.
* `Follower`: a group-less consumer of the final, interim, translation and speech topics, on
  the partitions of the calls this gateway serves (every topic of the project is keyed by call
  ID with the same partition count), handing each record of a served call to its connection.
  A new call's partitions are read from their end; a resumed stream's finals from its mark.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

from callstt.schemas.codec import DecodeError
from callstt.schemas.records import AudioChunk, CallSettings
from callstt.streams.client.kafka import aiokafka_config, avro_codec
from callstt.streams.gateway.session import StreamMark, caught_up_mark, mark_key
from callstt.streams.settings import Settings
from callstt.streams.worker.faust_compat import refresh_metadata

log = logging.getLogger("callstt.gateway")


def partition_of(key: bytes, partitions: int) -> int:
    """The partition murmur2 gives `key` (Java clients, Faust, librdkafka's murmur2_random)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Delivered:
    """A record of a served call, for its connection."""

    kind: str  # "final", "interim", "translation", "speech"
    record: Any  # Transcript, Translation or AudioChunk
    offset: int


class GatewayKafka:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.codec = avro_codec(settings)
        self.marks = MarkTable(settings)
        self.follower = Follower(settings, self.codec)
        self.audio_partitions = 0

    async def start(self) -> None:
        # aiokafka's clients are made inside the event loop that runs them
        self.producer = AIOKafkaProducer(**aiokafka_config(self.settings), acks="all", enable_idempotence=True,
                                         linger_ms=5)
        self.scanner = AIOKafkaConsumer(**aiokafka_config(self.settings), enable_auto_commit=False)
        self.scan_lock = asyncio.Lock()
        await self.producer.start()
        await self.scanner.start()
        await refresh_metadata(self.scanner)
        self.audio_partitions = len(self.scanner.partitions_for_topic(self.settings.audio_topic) or ())
        if not self.audio_partitions:
            raise RuntimeError(f"the audio topic {self.settings.audio_topic} has no partitions")
        await self.marks.start()
        await self.follower.start()

    async def stop(self) -> None:
        for part in (self.follower, self.marks):
            await part.stop()
        await self.scanner.stop()
        await self.producer.stop()

    def partition(self, call_id: str) -> int:
        return partition_of(call_id.encode(), self.audio_partitions)

    async def publish(self, chunk: AudioChunk) -> asyncio.Future:
        """Hand a chunk to the producer (waits while its buffer is full); the future gives its
        RecordMetadata once the broker acknowledged it."""
        value = self.codec.encode_chunk(chunk, self.settings.audio_topic)
        return await self.producer.send(self.settings.audio_topic, value, key=chunk.call_id.encode())

    async def publish_call_settings(self, record: CallSettings) -> None:
        topic = self.settings.call_settings_topic
        value = self.codec.encode_call_settings(record, topic)
        await (await self.producer.send(topic, value, key=record.call_id.encode()))

    async def write_mark(self, mark: StreamMark) -> None:
        await (await self.producer.send(self.settings.gateway_session_topic, mark.to_bytes(), key=mark.key))

    async def resume_point(self, call_id: str, stream_id: str) -> StreamMark | None:
        """The stream's mark, moved past the chunks acknowledged after it was written (None: a new stream)."""
        mark = await self.marks.latest(call_id, stream_id)
        if mark is None or mark.ended:
            return mark
        later = await self.chunks_after(call_id, stream_id, mark.audio_offset)
        return caught_up_mark(mark, later)

    async def end_offsets(self, call_id: str) -> tuple[int, int]:
        """The ends, now, of the call's audio and transcript partitions."""
        partition = self.partition(call_id)
        audio = TopicPartition(self.settings.audio_topic, partition)
        transcripts = TopicPartition(self.settings.transcript_topic, partition)
        ends = await self.scanner.end_offsets([audio, transcripts])
        return ends[audio], ends[transcripts]

    async def chunks_after(self, call_id: str, stream_id: str, offset: int) -> list[AudioChunk]:
        """The stream's chunks in the audio topic after `offset` (its call's partition, to its end now)."""
        tp = TopicPartition(self.settings.audio_topic, self.partition(call_id))
        key = call_id.encode()
        found: list[AudioChunk] = []
        async with self.scan_lock:
            self.scanner.assign([tp])
            end = (await self.scanner.end_offsets([tp]))[tp]
            self.scanner.seek(tp, max(offset + 1, 0))
            while await self.scanner.position(tp) < end:
                for record in (await self.scanner.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if record.offset < end and record.key == key:
                        try:
                            chunk = self.codec.decode_chunk(record.value)
                        except DecodeError:
                            continue
                        if chunk.stream_id == stream_id:
                            found.append(chunk)
        return found


class MarkTable:
    """Every stream's latest mark, read from the gateway-sessions topic from its beginning."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.topic = settings, settings.gateway_session_topic
        self.marks: dict[bytes, StreamMark] = {}
        self.task: asyncio.Task | None = None
        self.partitions: list[TopicPartition] = []

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(**aiokafka_config(self.settings), enable_auto_commit=False)
        await self.consumer.start()
        await refresh_metadata(self.consumer)
        self.partitions = [TopicPartition(self.topic, p) for p in sorted(self.consumer.partitions_for_topic(self.topic)
                                                                          or ())]
        if not self.partitions:
            raise RuntimeError(f"the gateway-sessions topic {self.topic} has no partitions")
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)
        self.task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        await self.consumer.stop()

    async def _read(self) -> None:
        while True:
            for records in (await self.consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.value is None:
                        self.marks.pop(record.key, None)
                        continue
                    try:
                        self.marks[record.key] = StreamMark.from_bytes(record.value)
                    except (ValueError, TypeError) as error:
                        log.warning("a gateway-sessions record that does not read: %s", error)

    async def latest(self, call_id: str, stream_id: str, timeout: float = 10.0) -> StreamMark | None:
        key = mark_key(call_id, stream_id)
        tp = self.partitions[partition_of(key, len(self.partitions))]
        end = (await self.consumer.end_offsets([tp]))[tp]
        deadline = time.monotonic() + timeout
        while await self.consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway-sessions topic was not read up to its end within {timeout:g}s")
            await asyncio.sleep(0.02)
        return self.marks.get(key)


Receiver = Callable[[Delivered], None]


class Follower:
    """Records of the served calls from the topics the gateway sends back."""

    def __init__(self, settings: Settings, codec) -> None:
        self.settings, self.codec = settings, codec
        self.kinds = {settings.transcript_topic: "final", settings.partial_topic: "interim",
                      settings.translation_topic: "translation", settings.speech_topic: "speech"}
        self.receivers: dict[str, set[Receiver]] = defaultdict(set)  # call ID -> its connections
        self.partitions_wanted: dict[int, int] = defaultdict(int)  # partition -> connections on it
        self.rewind: dict[TopicPartition, int] = {}  # transcript partitions to read again from an offset
        self.requested = self.applied = 0  # changes asked for, and applied, so far
        self.last_transcript_at = 0.0  # when a record of any followed call last came (monotonic)
        self.task: asyncio.Task | None = None
        self.failure: str | None = None  # why it stopped following (for /health)

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(**aiokafka_config(self.settings), enable_auto_commit=False)
        self.changed, self.progress = asyncio.Event(), asyncio.Condition()
        await self.consumer.start()
        await refresh_metadata(self.consumer)
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        await self.consumer.stop()

    async def follow(self, call_id: str, partition: int, receiver: Receiver,
                     finals_from: int | None = None) -> None:
        """Hand `receiver` the records of `call_id` (on `partition`) from now on, and the finals from
        offset `finals_from` of the transcript topic when given; returns once they are followed."""
        self.receivers[call_id].add(receiver)
        self.partitions_wanted[partition] += 1
        if finals_from is not None and finals_from >= 0:
            tp = TopicPartition(self.settings.transcript_topic, partition)
            self.rewind[tp] = min(finals_from, self.rewind.get(tp, finals_from))
        await self._apply()

    async def unfollow(self, call_id: str, partition: int, receiver: Receiver) -> None:
        self.receivers[call_id].discard(receiver)
        if not self.receivers[call_id]:
            del self.receivers[call_id]
        self.partitions_wanted[partition] -= 1
        if self.partitions_wanted[partition] <= 0:
            del self.partitions_wanted[partition]
        self.changed.set()

    async def _apply(self) -> None:
        self.requested += 1
        target = self.requested
        self.changed.set()
        async with self.progress:
            await self.progress.wait_for(lambda: self.applied >= target or self.failure is not None)
        if self.failure is not None:
            raise RuntimeError(self.failure)

    async def _run(self) -> None:
        try:
            await self._follow()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # reported on /health; the connections close with 1011
            log.exception("the gateway stopped following the transcript topics")
            self.failure = f"following the transcript topics failed: {error}"
            async with self.progress:
                self.progress.notify_all()

    async def _follow(self) -> None:
        following: set[TopicPartition] = set()
        while True:
            if self.changed.is_set():
                self.changed.clear()
                target = self.requested
                following = await self._reassign(following)
                self.applied = target
                async with self.progress:
                    self.progress.notify_all()
            if not following:
                await asyncio.sleep(0.05)
                continue
            batches = await self.consumer.getmany(timeout_ms=100)
            for tp, records in batches.items():
                for record in records:
                    self._hand_out(self.kinds[tp.topic], record)

    async def _reassign(self, following: set[TopicPartition]) -> set[TopicPartition]:
        """Follow the wanted partitions; those already followed keep their positions (aiokafka's
        assign forgets them), new ones start at their end, rewound ones at their offset."""
        wanted = {TopicPartition(topic, p) for topic in self.kinds for p in self.partitions_wanted}
        kept = {tp: await self.consumer.position(tp) for tp in following & wanted}
        if wanted != following:
            self.consumer.assign(sorted(wanted))
            for tp, position in kept.items():
                self.consumer.seek(tp, position)
            if wanted - following:
                await self.consumer.seek_to_end(*(wanted - following))
                for tp in wanted - following:
                    await self.consumer.position(tp)  # resolve "end" now: records after this are the call's
        for tp, offset in self.rewind.items():
            if tp in wanted and offset < await self.consumer.position(tp):
                self.consumer.seek(tp, offset)
        self.rewind.clear()
        return wanted

    def _hand_out(self, kind: str, record) -> None:
        self.last_transcript_at = time.monotonic()  # the workers and agents are making progress
        receivers = self.receivers.get(record.key.decode(errors="replace") if record.key else "")
        if not receivers or record.value is None:
            return
        try:
            if kind in ("final", "interim"):
                value = self.codec.decode_transcript(record.value)
            elif kind == "translation":
                value = self.codec.decode_translation(record.value)
            else:
                value = self.codec.decode_chunk(record.value)
        except DecodeError as error:
            log.debug("a %s record that does not decode: %s", kind, error)
            return
        for receiver in list(receivers):
            receiver(Delivered(kind, value, record.offset))
