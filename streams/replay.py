"""Reprocessing old calls: replay a set of calls or a time range of the audio topic through a
chosen model into a chosen topic, or rewind a consumer group for a full reprocess.

`replay_calls` never joins the live workers' consumer group: it reads the audio topic with
manually assigned partitions, from the offsets at `since` up to the end offsets taken when
it started, and drives the same pipeline core as the workers (streams/core/pipeline.py:
assembly, the language rule, the model step in the worker's inference mode, transcripts),
keeping the calls' state in memory; each utterance meets the model when the record that
ends it is read, as in a worker that keeps up with its calls. It publishes Transcript events
carrying the model version it was given. Greedy decoding is deterministic, so replaying the
same input with the same model gives the transcript ids and text the live worker gave.

The calls' own settings (language restriction, vocabulary, redaction) come from the compacted
call-settings topic, read to its end before the audio: a replayed call meets the options the
live worker applied. Compaction keeps only a call's latest settings, so a call whose settings
changed while it ran is replayed with the last ones.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from callstt.models.asr.routing import ModelRouter
from callstt.schemas.records import AudioChunk
from callstt.streams.client.kafka import RELIABLE_PRODUCER, confluent_config
from callstt.streams.core.assembly import StreamState
from callstt.streams.core.pipeline import MemoryStore, Pipeline, PipelineBatch, Rejected
from callstt.streams.core_from_settings import build_pipeline
from callstt.streams.settings import Settings

log = logging.getLogger("callstt.replay")

# offsets_for_times answers -1 when no record is at or after the time: read nothing there.
END_OF_PARTITION = -1


@dataclass
class ReplayReport:
    chunks: int = 0
    skipped_chunks: int = 0  # other calls, or outside the time range
    rejected_chunks: int = 0
    transcripts: int = 0
    calls: set[str] = field(default_factory=set)


def topic_exists(consumer: Consumer, topic: str) -> bool:
    metadata = consumer.list_topics(topic, timeout=30)
    return topic in metadata.topics and metadata.topics[topic].error is None


def start_offsets(consumer: Consumer, topic: str, since_ms: int | None) -> list[TopicPartition]:
    if not topic_exists(consumer, topic):
        raise KafkaException(f"topic {topic} does not exist")
    metadata = consumer.list_topics(topic, timeout=30)
    partitions = sorted(metadata.topics[topic].partitions)
    if since_ms is None:
        return [TopicPartition(topic, p, 0) for p in partitions]  # 0 = earliest still retained
    return consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in partitions], timeout=30)


@dataclass
class Replay:
    """One replay job: what to read, the pipeline, and the calls' state between batches."""

    pipeline: Pipeline
    router: ModelRouter
    producer: Producer
    output_topic: str
    call_ids: set[str] | None
    until_ms: int | None
    on_transcript: Callable | None
    report: ReplayReport = field(default_factory=ReplayReport)
    store: MemoryStore = field(default_factory=MemoryStore)

    def run_batch(self, messages: list[Message]) -> None:
        """Records through the pipeline as a worker that keeps up with the calls runs them: an
        utterance goes to the model when the record that ends it arrives. (A worker that is
        behind packs utterances that wait together into shared windows, which can change a
        word; replaying a backlog in big batches would do that to every call.)"""
        batch = self.pipeline.batch(self.store.get)
        for message in messages:
            chunk = self.pipeline.decode(message.value())
            if isinstance(chunk, Rejected):
                self.report.rejected_chunks += 1
            elif not self.wanted(chunk, message):
                self.report.skipped_chunks += 1
            elif self.accept(batch, chunk, message.timestamp()[1]):
                self.finish(batch)
                batch = self.pipeline.batch(self.store.get)
        self.finish(batch)

    def load_call_settings(self, messages: list[Message]) -> None:
        """Records of the call-settings topic (in offset order: the latest of a call wins), kept
        for the wanted calls as the worker keeps them."""
        batch = self.pipeline.batch(self.store.get)
        for message in messages:
            call_id = (message.key() or b"").decode(errors="replace")
            if call_id and (not self.call_ids or call_id in self.call_ids):
                accepted = batch.accept_call_settings(call_id, message.value(), owner=None,
                                                      received_ms=message.timestamp()[1])
                if isinstance(accepted, Rejected):
                    log.warning("call settings of %s at offset %d are not readable; its calls replay with "
                                "the defaults", call_id, message.offset())
        self.store.apply(batch.changes())

    def wanted(self, chunk: AudioChunk, message: Message) -> bool:
        timestamp = message.timestamp()[1]  # when the broker got it: the range is on that axis
        return (not self.call_ids or chunk.call_id in self.call_ids) and \
            (self.until_ms is None or timestamp <= self.until_ms)

    def accept(self, batch: PipelineBatch, chunk: AudioChunk, received_ms: int) -> bool:
        """One chunk through its stream; true when it finished an utterance."""
        outcome = batch.accept_chunk(chunk, received_ms, owner=None)
        if isinstance(outcome, Rejected):
            self.report.rejected_chunks += 1
            return False
        self.report.chunks += 1
        self.report.calls.add(chunk.call_id)
        return bool(outcome.utterances)

    def close_open_streams(self) -> None:
        """Calls cut off by the end of the range: close their open utterances."""
        batch = self.pipeline.batch(self.store.get)
        for key, raw in list(self.store.items()):
            if key.startswith("S|"):
                state = StreamState.from_bytes(raw)
                batch.flush(state.call_id, state.stream_id, int(time.time() * 1000))
        self.finish(batch)

    def finish(self, batch: PipelineBatch) -> None:
        """Transcribe what the batch finished, publish it, keep the state."""
        for result in batch.transcribe(self.router):
            if result.transcript is None:
                continue
            self.producer.produce(self.output_topic, key=result.transcript.call_id.encode(),
                                  value=self.pipeline.codec.encode_transcript(result.transcript, self.output_topic))
            self.producer.poll(0)
            self.report.transcripts += 1
            if self.on_transcript:
                self.on_transcript(result.transcript)
        self.store.apply(batch.changes())


def replay_calls(settings: Settings, router: ModelRouter, output_topic: str, model_version: str,
                 call_ids: set[str] | None = None, since_ms: int | None = None, until_ms: int | None = None,
                 on_transcript: Callable | None = None) -> ReplayReport:
    """Reprocess the chosen calls / time range; returns what was done."""
    consumer = Consumer(confluent_config(settings, **{
        "group.id": f"callstt-replay-{uuid.uuid4().hex[:8]}",  # never committed
        "enable.auto.commit": False, "auto.offset.reset": "earliest"}))
    producer = Producer(confluent_config(settings, **RELIABLE_PRODUCER))
    # Replay reads recorded calls as fast as it can: speculative endpoints would only add model calls.
    pipeline = build_pipeline(replace(settings, speculate_ms=0, partial_interval_ms=0), model_version=model_version)
    replay = Replay(pipeline, router, producer, output_topic, call_ids, until_ms, on_transcript)
    try:
        if topic_exists(consumer, settings.call_settings_topic):
            stop_at = assign_range(consumer, settings.call_settings_topic, since_ms=None)
            for messages in read_until(consumer, stop_at, settings.batch_max_events):
                replay.load_call_settings(messages)
        stop_at = assign_range(consumer, settings.audio_topic, since_ms)
        for messages in read_until(consumer, stop_at, settings.batch_max_events):
            replay.run_batch(messages)
        replay.close_open_streams()
        if producer.flush(60):
            raise KafkaException("replayed transcripts were not all acknowledged within 60 s")
    finally:
        consumer.close()
    return replay.report


def assign_range(consumer: Consumer, topic: str, since_ms: int | None) -> dict[int, int]:
    """Assign the partitions from `since_ms` (or their start); returns each one's end offset now:
    a replay is a bounded job, not a second live worker."""
    assignment = [tp for tp in start_offsets(consumer, topic, since_ms) if tp.offset != END_OF_PARTITION]
    stop_at = {tp.partition: consumer.get_watermark_offsets(tp, timeout=30)[1] for tp in assignment}
    assignment = [tp for tp in assignment if tp.offset < stop_at[tp.partition]]
    consumer.assign(assignment)
    return {tp.partition: stop_at[tp.partition] for tp in assignment}


def read_until(consumer: Consumer, stop_at: dict[int, int], batch_size: int):
    """Batches of records (as the worker takes them) until every partition reached its end offset."""
    remaining = set(stop_at)
    while remaining:
        batch = []
        for message in consumer.consume(batch_size, timeout=1.0):
            if message.error():
                continue
            if message.offset() >= stop_at[message.partition()] - 1:
                remaining.discard(message.partition())
            if message.offset() < stop_at[message.partition()]:
                batch.append(message)
        if batch:
            yield batch


def rewind_group(settings: Settings, group_id: str, to_ms: int) -> dict[int, int]:
    """Move a (stopped) consumer group's offsets on the audio topic back to `to_ms`.

    Kafka's offset-reset semantics: each partition goes to the first record at or after
    the time (or its end when there is none). Kafka refuses while the group has members,
    so stop the workers first. Streams that had ended are then reprocessed from scratch
    with the same transcript ids; streams still open keep their table state.
    """
    admin = AdminClient(confluent_config(settings))
    consumer = Consumer(confluent_config(settings, **{"group.id": group_id, "enable.auto.commit": False}))
    try:
        targets = start_offsets(consumer, settings.audio_topic, to_ms)
        resolved = []
        for tp in targets:
            if tp.offset == END_OF_PARTITION:
                tp = TopicPartition(tp.topic, tp.partition, consumer.get_watermark_offsets(tp, timeout=30)[1])
            resolved.append(tp)
    finally:
        consumer.close()
    futures = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group_id, resolved)])
    for future in futures.values():
        future.result(timeout=30)
    return {tp.partition: tp.offset for tp in resolved}
