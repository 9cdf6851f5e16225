"""Reprocessing old calls: replay a set of calls or a time range of the audio topic through a
chosen model into a chosen topic, or rewind a consumer group for a full reprocess.

`replay_calls` never joins the live workers' consumer group: it reads the audio topic with
manually assigned partitions, from the offsets at `since` up to the end offsets taken when
it started, runs the same per-stream assembly as the workers (streams/assembly.py) and
the same transcription (streams/transcripts.py), and publishes Transcript events carrying
the model version it was given. Greedy decoding is deterministic, so replaying the same
input with the same model gives the same transcript ids and text.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from models.endpointing import EndpointConfig
from models.errors import BadChunk
from models.routing import ModelRouter
from schemas.codec import AvroCodec, DecodeError
from streams.core.assembly import AssemblyConfig, StreamAssembler, StreamState
from streams.settings import Settings
from streams.core.transcripts import should_stick, transcribe_utterance

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


def start_offsets(consumer: Consumer, topic: str, since_ms: int | None) -> list[TopicPartition]:
    metadata = consumer.list_topics(topic, timeout=30)
    if topic not in metadata.topics or metadata.topics[topic].error is not None:
        raise KafkaException(f"topic {topic} does not exist")
    partitions = sorted(metadata.topics[topic].partitions)
    if since_ms is None:
        return [TopicPartition(topic, p, 0) for p in partitions]  # 0 = earliest still retained
    return consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in partitions], timeout=30)


def replay_calls(settings: Settings, router: ModelRouter, output_topic: str, model_version: str,
                 call_ids: set[str] | None = None, since_ms: int | None = None, until_ms: int | None = None,
                 on_transcript: Callable | None = None) -> ReplayReport:
    """Reprocess the chosen calls / time range; returns what was done."""
    codec = AvroCodec(settings.schema_registry_url or None)
    assembler = StreamAssembler(AssemblyConfig(endpoint=EndpointConfig(
        min_silence_ms=settings.min_silence_ms, max_utterance_ms=settings.max_utterance_ms)))
    consumer = Consumer({**settings.kafka_client_config(),
                         "group.id": f"callstt-replay-{uuid.uuid4().hex[:8]}",  # never committed
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    producer = Producer({**settings.kafka_client_config(), "acks": "all",
                         "enable.idempotence": True, "partitioner": "murmur2_random"})
    report = ReplayReport()
    states: dict[tuple[str, str], StreamState] = {}
    blocks: dict[str, bytes] = {}

    def emit(outcome) -> None:
        """Transcribe and publish an outcome's utterances, as the worker does; keep its blocks."""
        for utterance in outcome.utterances:
            result = transcribe_utterance(router, utterance, outcome.state.language,
                                          outcome.state.language_probability, model_version)
            if should_stick(result.choice, utterance):
                outcome.state.language = result.choice.language
                outcome.state.language_probability = result.choice.probability
            if result.transcript is None:
                continue
            producer.produce(output_topic, key=result.transcript.call_id.encode(),
                             value=codec.encode_transcript(result.transcript, output_topic))
            producer.poll(0)
            report.transcripts += 1
            if on_transcript:
                on_transcript(result.transcript)
        blocks.update(outcome.writes)
        for block in outcome.deletes:
            blocks.pop(block, None)

    try:
        assignment = [tp for tp in start_offsets(consumer, settings.audio_topic, since_ms)
                      if tp.offset != END_OF_PARTITION]
        # Stop at the end offsets seen now: a replay is a bounded job, not a second live worker.
        stop_at = {tp.partition: consumer.get_watermark_offsets(tp, timeout=30)[1] for tp in assignment}
        assignment = [tp for tp in assignment if tp.offset < stop_at[tp.partition]]
        consumer.assign(assignment)
        remaining = {tp.partition for tp in assignment}
        while remaining:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            if message.offset() >= stop_at[message.partition()] - 1:
                remaining.discard(message.partition())
            if message.offset() >= stop_at[message.partition()]:
                continue
            try:
                chunk = codec.decode_chunk(message.value())
            except DecodeError:
                report.rejected_chunks += 1
                continue
            timestamp = message.timestamp()[1]  # when the broker got it: the range is on that axis
            if (call_ids and chunk.call_id not in call_ids) or (until_ms is not None and timestamp > until_ms):
                report.skipped_chunks += 1
                continue
            key = (chunk.call_id, chunk.stream_id)
            state = states.get(key) or assembler.new_state(*key)
            try:
                outcome = assembler.accept(state, chunk, message.timestamp()[1], blocks.get)
            except BadChunk:
                report.rejected_chunks += 1
                continue
            report.chunks += 1
            report.calls.add(chunk.call_id)
            emit(outcome)
            if outcome.finished:
                states.pop(key, None)
            else:
                states[key] = outcome.state
        # Calls cut off by the end of the range: close their open utterances.
        for state in states.values():
            emit(assembler.flush_idle(state, int(time.time() * 1000), blocks.get))
        if producer.flush(60):
            raise KafkaException("replayed transcripts were not all acknowledged within 60 s")
    finally:
        consumer.close()
    return report


def rewind_group(settings: Settings, group_id: str, to_ms: int) -> dict[int, int]:
    """Move a (stopped) consumer group's offsets on the audio topic back to `to_ms`.

    Kafka's offset-reset semantics: each partition goes to the first record at or after
    the time (or its end when there is none). Kafka refuses while the group has members,
    so stop the workers first. Streams that had ended are then reprocessed from scratch
    with the same transcript ids; streams still open keep their table state.
    """
    admin = AdminClient(settings.kafka_client_config())
    consumer = Consumer({**settings.kafka_client_config(), "group.id": group_id,
                         "enable.auto.commit": False})
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
