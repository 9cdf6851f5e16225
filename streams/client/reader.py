"""Reading transcripts back: the library under `callstt tail`, the demo, the benchmark and the tests.

`TranscriptReader.records` is the one poll loop every transcript reader of the project runs
(`follow` here, `streams.client.tailing.TranscriptTail.follow`, the benchmark's collector):
poll, skip end-of-partition events, raise on consumer errors, decode the Avro transcript and
skip records that do not decode.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message

from callstt.schemas.codec import AvroCodec, DecodeError
from callstt.schemas.records import Transcript


def topic_list(topic: str | Sequence[str]) -> list[str]:
    """One topic name or several, as the list a consumer subscribes to."""
    return [topic] if isinstance(topic, str) else list(topic)


class TranscriptReader:
    """Follows the transcript topic with its own consumer group (it never disturbs the workers').

    `topic` may also be several topics of Transcript records (the transcript and partial topics:
    `callstt tail --partials`); their records interleave in arrival order. With `decode` (e.g.
    `AvroCodec.decode_translation`) it reads another kind of record the same way.
    """

    def __init__(self, bootstrap_servers: str, topic: str | Sequence[str], from_beginning: bool = True,
                 codec: AvroCodec | None = None, group_id: str | None = None,
                 extra_config: dict | None = None, decode: Callable[[bytes], Any] | None = None) -> None:
        self.codec = codec or AvroCodec()
        self._decode = decode
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id or f"callstt-tail-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.auto.commit": group_id is not None,
            **(extra_config or {}),  # e.g. streams.client.kafka.confluent_config(settings): TLS / SASL
        })
        self.consumer.subscribe(topic_list(topic))

    _decode: Callable[[bytes], Any] | None = None

    def decode(self, value: bytes) -> Any:
        """A record's value as this reader's kind of record: a Transcript unless `decode` was given."""
        return (self._decode or self.codec.decode_transcript)(value)

    def records(self, stop: Callable[[], bool] | None = None, poll_s: float = 0.5,
                on_record: Callable[[Message], None] | None = None,
                on_error: Callable[[KafkaError], None] | None = None) -> Iterator[tuple[Message, Transcript]]:
        """Yield `(record, transcript)` for every record that decodes as a Transcript, until `stop()`
        (asked before every poll of `poll_s` seconds) returns true.

        End-of-partition events are skipped; other consumer errors go to `on_error` (default:
        `consumer_error`, which raises; one that returns means "retry"). `on_record` sees every
        record before it is decoded; records that do not decode are skipped (not ours to judge:
        a reader shows only what it can read).
        """
        on_error = on_error or self.consumer_error
        while stop is None or not stop():
            message = self.consumer.poll(poll_s)
            if message is None:
                continue
            error = message.error()
            if error:
                if error.code() != KafkaError._PARTITION_EOF:
                    on_error(error)
                continue
            if on_record is not None:
                on_record(message)
            try:
                transcript = self.decode(message.value())
            except DecodeError:
                continue
            yield message, transcript

    def consumer_error(self, error: KafkaError) -> None:
        """What a consumer error (not end-of-partition) does to `records`: raise."""
        raise RuntimeError(f"consuming transcripts failed: {error}")

    def follow(self, idle_exit_s: float | None = None, call_id: str | None = None) -> Iterator[Transcript]:
        """Yield transcripts as they arrive; stop after `idle_exit_s` without a new one."""
        last_seen = time.monotonic()

        def idle() -> bool:
            return idle_exit_s is not None and time.monotonic() - last_seen >= idle_exit_s

        for _, transcript in self.records(stop=idle, poll_s=0.5):
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
