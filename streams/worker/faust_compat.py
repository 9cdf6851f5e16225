"""The private Faust and aiokafka internals the worker relies on, in one place.

Each one is something the public API does not offer; each is checked against
faust-streaming 0.15.3 and aiokafka 0.14.0, and tests/unit/test_faust_compat.py fails
loudly when an upgrade removes or renames one. Nothing else in the project touches them.
"""

from __future__ import annotations

import weakref
from typing import Any

import faust
import faust.streams as faust_streams
from faust.tables.recovery import Recovery
from faust.types import TP


def bind_event(event: Any) -> None:
    """Make `event` Faust's current event in this task.

    Why: table reads and writes go to the current event's partition (its store and its
    changelog partition). Faust sets it while a stream is read one event at a time, but
    `stream.take_events` hands over a batch, so the agent binds each event before its table
    work. Only the context variable is set (`faust.streams._current_event`): the stream's
    own `current_event` attribute belongs to the background reader that fills the batch."""
    faust_streams._current_event.set(weakref.ref(event))


def hold(event: Any) -> None:
    """Keep an event's offset from being committed until `release`.

    Why: `take_events` acks every record of a batch when the agent's body ends, even when it
    ends by cancellation (a shutdown or a rebalance mid-inference), and the agent's body ends
    while the batch is still in the model (streams/worker/agent.py keeps reading meanwhile). An
    extra reference (`Message.incref`) keeps that ack from letting the offset be committed
    before the batch's transcripts are acknowledged and its table writes made."""
    event.message.incref()


def release(event: Any) -> None:
    """The batch is done: drop the reference `hold` took with an ack of our own (`Event.ack`).
    Whichever of take_events' ack and this one comes last marks the offset committable, so a
    release before or after the agent's body ends both work."""
    event.ack()


def read_offset(app: Any, tp: TP) -> int | None:
    """The last offset the worker's consumer has read from `tp` (None: none yet).

    Why: consumer lag is highwater minus the next offset to read; Faust's public
    `consumer.position` is a coroutine that asks the broker, while the idle timer and /health
    need the in-memory value every second (`Consumer._read_offset`)."""
    return getattr(app.consumer, "_read_offset", {}).get(tp)


async def refresh_metadata(consumer: Any) -> None:
    """Ask the broker for fresh topic metadata now (aiokafka `AIOKafkaConsumer._client`).

    Why: a group-less aiokafka consumer learns a topic's partitions only from metadata, and a
    topic created a moment ago is not in its first answer; the public API has no refresh."""
    await consumer._client.force_metadata_update()


async def topic_partitions(consumer: Any) -> dict[str, int]:
    """Every topic the broker shows now, with its partition count: one metadata request of an
    aiokafka consumer's client (`_client.fetch_all_metadata`, as `AIOKafkaConsumer.topics()` makes).

    Why: `topics()` returns the names only (the metadata it fetched is a new object it drops); the
    broker probe also needs each count, to see a topic deleted and made again (by the broker's
    auto-creation) with another count."""
    cluster = await consumer._client.fetch_all_metadata()
    return {topic: len(cluster.partitions_for_topic(topic) or ()) for topic in cluster.topics()}


# RocksDB options of each partition's database (Faust opens one per table partition). Faust's
# defaults suit big tables: a 64 MB write buffer, up to 3 of them, and a 2 GB block cache, per
# database; RSS grew for 40 minutes in the one-hour soak (docs/soak.md), and a worker with 32
# partitions could outgrow its pod. Our tables are small and short-lived (a stream's state and
# its open utterance's audio, rewritten or deleted within seconds), so small buffers suffice.
ROCKSDB_OPTIONS = {"write_buffer_size": 4 << 20, "max_write_buffer_number": 2, "block_cache_size": 8 << 20}


class AcknowledgedTable(faust.Table):
    """A Faust table whose changelog records can be awaited until the broker has them.

    Why: Faust writes a table change to its changelog in the background (`send_soon`) and
    drops the record's future; before committing offsets it flushes its producer, but that
    flush gives up after 0.1 s without a send (`ProducerBuffer.flush_atmost`), so under load
    (the model thread holds the interpreter) offsets could be committed while the state they
    depend on was still in memory: a SIGKILL then left a replacement reading past audio whose
    state never reached the changelog. `on_key_set`/`on_key_del` send through
    `send_changelog`; this keeps each future until `changes_acknowledged` awaits it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unacknowledged: list = []

    @classmethod
    def add_to(cls, app: faust.App, name: str, partitions: int) -> "AcknowledgedTable":
        """The app's table `name` of raw bytes keys and values (Faust's raw serializer in the store
        and the changelog), one changelog partition per partition of the topics it follows."""
        return app.tables.add(cls(app, name=name, default=None, beacon=app.tables.beacon, partitions=partitions,
                                  key_type=bytes, value_type=bytes, options=dict(ROCKSDB_OPTIONS)))

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        sent = super().send_changelog(*args, **kwargs)
        self.unacknowledged.append(sent)
        return sent

    async def changes_acknowledged(self) -> None:
        """Wait until every change made so far is in the changelog (raises the send's error)."""
        while self.unacknowledged:
            await self.unacknowledged.pop(0)  # popped first: a failed send is not awaited again


def seek_before_resuming_streams() -> None:
    """After a rebalance, seek the stream partitions to their committed offsets *before* their
    fetching resumes (`Recovery.on_recovery_completed` and `Recovery._resume_streams` resume
    them first, then seek). Idempotent; the worker and the downstream agents call it once.

    Why: in between, the fetcher fetches from wherever its position was and hands the records
    over while the seek moves the position and Faust's read offsets; records were then dropped
    as already read ("DROPPED MESSAGE ROFF") or never reached the agent, and a replacement
    worker lost audio ("chunks 245..259 never came" in tests/faults/test_worker_crash.py's
    random SIGKILLs; faust-streaming issue 216 is the same race for apps without tables). A
    paused partition is not fetched, so a seek made while it is paused leaves nothing in flight.
    Each recovery step runs as Faust wrote it, only `resume_partitions` waits for the seek."""
    for name in ("on_recovery_completed", "_resume_streams"):
        step = getattr(Recovery, name)
        if not getattr(step, "seeks_first", False):
            setattr(Recovery, name, _seeking_first(step))


def _seeking_first(step: Any) -> Any:
    async def seeking_first(self: Any, *args: Any, **kwargs: Any) -> Any:
        consumer = self.app.consumer
        resume_partitions, perform_seek = consumer.resume_partitions, consumer.perform_seek
        waiting: list = []  # partitions to resume once the seek is done

        async def seek_then_resume() -> None:
            await perform_seek()
            while waiting:
                resume_partitions(waiting.pop(0))

        consumer.resume_partitions, consumer.perform_seek = waiting.append, seek_then_resume
        try:
            return await step(self, *args, **kwargs)
        finally:
            del consumer.resume_partitions, consumer.perform_seek  # the class's own again
            while waiting:  # no seek came (no assignment): resume as Faust asked
                resume_partitions(waiting.pop(0))

    seeking_first.seeks_first = True
    return seeking_first
