"""What a live run wrote to Kafka for its calls, per topic: the audio the platform published, the
worker's table changelog (stream state and audio blocks), its transcripts and interims.

    topics = run_topics(worker)                              # kind -> topic
    marks = end_offsets(worker, topics.values())             # before the run publishes
    ...the run...
    written = written_since(worker, marks, run_calls)        # after its last transcript
    figures = per_call_second(written, call_seconds, topics)

Bytes are each record's key and value as the producer handed them to the client (before
compression, batch headers and replication: multiply by the topic's replication factor, which
the figures name, for the brokers' disk). Only records keyed by one of the run's calls count
(audio, transcripts and interims are keyed by call ID; the changelog's keys name the call too,
streams/core/assembly.py), so the previous run's late writes are left out.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from callstt.streams.bench.stats import _r
from callstt.streams.bench.subprocesses import WorkerSubprocess
from callstt.streams.client.kafka import confluent_config
from callstt.streams.client.topics import worker_changelog_topic
from callstt.streams.settings import Settings

# A partition read back stops when it reaches the end offset taken when the reading began, or
# after this long without a record (the end is then reported short, not waited for forever).
READ_IDLE_S = 10.0


def run_topics(worker: WorkerSubprocess) -> dict[str, str]:
    """The topics a live run writes to, by what they carry."""
    settings = Settings.from_env(worker.env())
    return {"audio": settings.audio_topic, "changelog": worker_changelog_topic(settings),
            "transcripts": settings.transcript_topic, "interims": settings.partial_topic}


def _consumer(worker: WorkerSubprocess) -> Consumer:
    settings = Settings.from_env(worker.env())
    return Consumer(confluent_config(settings, **{"group.id": f"{worker.name}-bytes", "enable.auto.commit": False}))


def end_offsets(worker: WorkerSubprocess, topics: Collection[str]) -> dict[str, dict[int, int]]:
    """Each partition's end offset now (a topic that does not exist yet: empty)."""
    consumer = _consumer(worker)
    try:
        marks: dict[str, dict[int, int]] = {}
        for topic in topics:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions or {}
            marks[topic] = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                            for p in partitions}
        return marks
    finally:
        consumer.close()


def written_since(worker: WorkerSubprocess, marks: Mapping[str, Mapping[int, int]],
                  calls: Collection[str]) -> dict[str, dict[str, Any]]:
    """Per topic, the records written since `marks` whose key names one of `calls`: their count,
    key + value bytes, and the topic's replication factor."""
    consumer = _consumer(worker)
    try:
        return {topic: _read(consumer, topic, marks.get(topic, {}), calls) for topic in marks}
    finally:
        consumer.close()


def _read(consumer: Consumer, topic: str, since: Mapping[int, int], calls: Collection[str]) -> dict[str, Any]:
    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    partitions = metadata.partitions or {}
    replication = max((len(p.replicas) for p in partitions.values()), default=0)
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    left = {p: end for p, end in ends.items() if end > since.get(p, 0)}  # partition -> its end offset
    wanted = [call.encode() for call in calls]
    records = size = 0
    if left:
        consumer.assign([TopicPartition(topic, p, since.get(p, 0)) for p in left])
        quiet_since = time.monotonic()
        while left and time.monotonic() - quiet_since < READ_IDLE_S:
            messages = consumer.consume(1000, timeout=1.0)
            if messages:
                quiet_since = time.monotonic()
            for message in messages:
                if message.error():
                    raise KafkaException(message.error())
                end = left.get(message.partition())
                if end is None or message.offset() >= end:  # written after the reading began
                    continue
                key = message.key() or b""
                if any(call in key for call in wanted):
                    records += 1
                    size += len(key) + len(message.value() or b"")
                if message.offset() + 1 >= end:
                    del left[message.partition()]
        consumer.unassign()
    return {"topic": topic, "records": records, "bytes": size, "replication_factor": replication,
            "read_to_end": not left}


def per_call_second(written: Mapping[str, Mapping[str, Any]], call_seconds: float,
                    kinds: Mapping[str, str]) -> dict[str, Any]:
    """Bytes and records per second of call audio (each stream of a call counted once per call
    second: the figure a deployment multiplies by its concurrent calls), per kind of topic
    (`kinds`: kind -> topic, streams/bench/broker_bytes.run_topics), and the changelog's bytes per
    byte of audio published, the figure state kept by reference is to bring down."""
    per_kind = {kind: written.get(topic, {}) for kind, topic in kinds.items()}
    audio_bytes = per_kind.get("audio", {}).get("bytes") or 0
    changelog_bytes = per_kind.get("changelog", {}).get("bytes") or 0
    return {
        "call_seconds": _r(call_seconds),
        "bytes_per_call_second": {kind: _r(w.get("bytes", 0) / call_seconds, 0) if call_seconds else None
                                  for kind, w in per_kind.items()},
        "records_per_call_second": {kind: _r(w.get("records", 0) / call_seconds, 1) if call_seconds else None
                                    for kind, w in per_kind.items()},
        "replication_factor": {kind: w.get("replication_factor") for kind, w in per_kind.items()},
        "changelog_per_audio_byte": _r(changelog_bytes / audio_bytes, 3) if audio_bytes else None,
        "complete": all(w.get("read_to_end", False) for w in per_kind.values()),
    }
