"""Reading transcripts back: the library under `callstt tail`, the demo and the tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError

from schemas.codec import AvroCodec, DecodeError
from schemas.records import Transcript


class TranscriptReader:
    """Follows the transcript topic with its own consumer group (it never disturbs the workers')."""

    def __init__(self, bootstrap_servers: str, topic: str, from_beginning: bool = True,
                 codec: AvroCodec | None = None, group_id: str | None = None,
                 extra_config: dict | None = None) -> None:
        self.codec = codec or AvroCodec()
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id or f"callstt-tail-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.auto.commit": group_id is not None,
            **(extra_config or {}),  # e.g. Settings.kafka_client_config(): TLS / SASL
        })
        self.consumer.subscribe([topic])

    def follow(self, idle_exit_s: float | None = None, call_id: str | None = None) -> Iterator[Transcript]:
        """Yield transcripts as they arrive; stop after `idle_exit_s` without a new one."""
        last_seen = time.monotonic()
        while idle_exit_s is None or time.monotonic() - last_seen < idle_exit_s:
            message = self.consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"consuming transcripts failed: {message.error()}")
            try:
                transcript = self.codec.decode_transcript(message.value())
            except DecodeError:
                continue  # not ours to judge: tail shows only what it can read
            last_seen = time.monotonic()
            if call_id is None or transcript.call_id == call_id:
                yield transcript

    def collect(self, idle_exit_s: float, call_id: str | None = None) -> list[Transcript]:
        return list(self.follow(idle_exit_s, call_id))

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> "TranscriptReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
