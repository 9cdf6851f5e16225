"""The broker the project starts is a real Apache Kafka: both client stacks talk to it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

pytestmark = pytest.mark.integration


def create_topic(bootstrap: str, partitions: int = 3) -> str:
    topic = f"broker-check-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive its futures
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    futures[topic].result(timeout=30)
    return topic


def test_broker_reports_apache_kafka_metadata(kafka_bootstrap):
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert [broker.host for broker in metadata.brokers.values()] == ["127.0.0.1"]
    assert metadata.cluster_id and len(metadata.cluster_id) == 22


def test_confluent_kafka_to_aiokafka_and_back(kafka_bootstrap):
    topic = create_topic(kafka_bootstrap)
    sent = {f"call-{i}".encode(): f"chunk {i}".encode() for i in range(20)}

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all", "partitioner": "murmur2_random"})
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0

    async def consume_then_reply() -> tuple[dict[bytes, bytes], dict[bytes, int]]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                                    group_id=f"g-{uuid.uuid4().hex[:6]}")
        await consumer.start()
        received: dict[bytes, bytes] = {}
        partitions: dict[bytes, int] = {}
        try:
            while len(received) < len(sent):
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), timeout=30)
                for records in batch.values():
                    for record in records:
                        received[record.key] = record.value
                        partitions[record.key] = record.partition
        finally:
            await consumer.stop()
        reply = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await reply.start()
        try:
            for key, value in received.items():
                await reply.send_and_wait(topic, key=key, value=value.upper())
        finally:
            await reply.stop()
        return received, partitions

    received, aiokafka_view_partitions = asyncio.run(consume_then_reply())
    assert received == sent

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"c-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    replies: dict[bytes, bytes] = {}
    reply_partitions: dict[bytes, int] = {}
    try:
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            if message.value().startswith(b"CHUNK"):
                replies[message.key()] = message.value()
                reply_partitions[message.key()] = message.partition()
            if len(replies) == len(sent):
                break
    finally:
        consumer.close()
    assert replies == {key: value.upper() for key, value in sent.items()}
    # murmur2 in librdkafka and aiokafka's default partitioner agree: same key, same partition.
    assert reply_partitions == aiokafka_view_partitions
