"""The private Faust and aiokafka internals the worker relies on, in one place.

Each one is something the public API does not offer; each is checked against
faust-streaming 0.15.3 and aiokafka 0.14.0, and tests/unit/test_faust_compat.py fails
loudly when an upgrade removes or renames one. Nothing else in the project touches them.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import faust
import faust.streams as faust_streams
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, ensure_aiokafka_TP
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


def give_up(event: Any) -> None:
    """An event `hold` kept will never be released (streams/core/checkpoints.py `give_up_needed`):
    take it off the consumer's list of records handed out and not yet acknowledged, so that
    `Consumer.wait_empty` (a rebalance, a stop) does not wait for it. Its offset is never
    committed: whoever owns its partition next reads it again."""
    consumer, message = event.app.consumer, event.message
    consumer._unacked_messages.discard(message)
    given_up = consumer.__dict__.setdefault("_given_up", {})  # (cleared at the next assignment)
    given_up[message.tp] = min(given_up.get(message.tp, message.offset), message.offset)


def checkpoint_while_waiting(app: Any, begin: Callable[[], Awaitable[None]], end: Callable[[], None]) -> None:
    """While `app`'s consumer waits for every record it handed out to be acknowledged
    (`Consumer.wait_empty`: before a rebalance's revocation and at a stop), `begin` has run
    first and `end` runs after.

    Why: the worker holds a record until its stream's next checkpoint (streams/core/checkpoints.py),
    seconds later; Faust's wait would then last until the group gave up on the worker. `begin`
    checkpoints everything now, and makes each batch that finishes meanwhile checkpoint all it
    changed. Patched on the class (Faust makes the consumer lazily), for this app's consumer only."""
    _WAIT_HOOKS[app] = (begin, end)
    if getattr(Consumer.wait_empty, "checkpoints_first", False):
        return
    original = Consumer.wait_empty

    async def wait_empty(self: Any) -> None:
        hooks = _WAIT_HOOKS.get(self.app)
        if hooks is None:
            return await original(self)
        begin, end = hooks
        await begin()
        try:
            await original(self)
        finally:
            end()

    wait_empty.checkpoints_first = True
    Consumer.wait_empty = wait_empty


_WAIT_HOOKS: "weakref.WeakKeyDictionary[Any, tuple]" = weakref.WeakKeyDictionary()


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


def install_rebalance_fixes() -> None:
    """What every Faust app of the project installs before it starts, so that no record is lost
    in a rebalance: `seek_before_resuming_streams` and `fetch_only_active_partitions`. Idempotent."""
    seek_before_resuming_streams()
    fetch_only_active_partitions()


def seek_before_resuming_streams() -> None:
    """After a rebalance, seek the stream partitions to their committed offsets (those never
    committed to their beginning: `seek_never_committed_to_beginning`) *before* their
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
            await seek_never_committed_to_beginning(self.app)
            await put_back_positions_past_committed(self.app)
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


def stream_partitions(app: Any) -> list[Any]:
    """The partitions assigned to the app's consumer that its agents read: not its tables' changelogs."""
    changelogs = set(app.tables.changelog_topics)
    return [tp for tp in app.consumer.assignment() if tp.topic not in changelogs]


async def seek_never_committed_to_beginning(app: Any) -> None:
    """Seek the assigned stream partitions that the group never committed an offset for to their
    beginning, and count that as their committed offset (`commit_only_past_acknowledged`).

    Why: `perform_seek` seeks only partitions with a committed offset above 0 (aiokafka's
    `seek_to_committed`), so a partition nobody committed kept the position its fetcher had.
    When a worker died holding every record of such a partition (the worker holds records until
    their stream's checkpoint), the worker taking it over fetched it to its end without handing a
    record to its agent: that call stalled for good (3 of 6 runs of scripts/failover_probe.py).
    The beginning is where Faust's `consumer_auto_offset_reset` ("earliest") would start it."""
    consumer = app.consumer
    consumer.__dict__.pop("_given_up", None)  # those of the last assignment are read again now
    never_committed = [tp for tp in stream_partitions(app) if consumer._committed_offset.get(tp) is None]
    if not never_committed:
        return
    earliest = await consumer._thread.earliest_offsets(*(ensure_aiokafka_TP(tp) for tp in never_committed))
    beginnings = {ensure_aiokafka_TP(tp): earliest[ensure_aiokafka_TP(tp)] for tp in never_committed}
    await consumer.seek_wait(beginnings)  # (in the consumer's own thread, as Faust's seeks are)
    for tp in never_committed:
        consumer._committed_offset[tp] = beginnings[ensure_aiokafka_TP(tp)]


async def put_back_positions_past_committed(app: Any) -> None:
    """Check, while the stream partitions are still paused, that each one's fetch position is its
    committed offset; put back (with a warning) any that is not.

    Why: the check that found `fetch_only_active_partitions`'s bug (a new owner's positions at
    the log's end right after the seek, its first record 1,400 past the committed offset: that
    audio never reached the agent). A paused partition is not handed out, so after the seeks
    nothing should move a position; one that moved is put back rather than read from there."""
    consumer = app.consumer
    moved = {}
    for tp in stream_partitions(app):
        committed = consumer._committed_offset.get(tp)
        if committed is None:
            continue
        position = await consumer._thread.position(ensure_aiokafka_TP(tp))
        if position is not None and position != committed:
            moved[ensure_aiokafka_TP(tp)] = committed
            consumer.log.warning("Fetch position of %s is %s, not its committed offset %s: put back", tp,
                                 position, committed)
    if moved:
        await consumer.seek_wait(moved)


def fetch_only_active_partitions() -> None:
    """The consumer thread hands out only records of partitions active at that moment. Idempotent.

    Why: Faust passes its live set of active partitions to the consumer thread's
    `fetched_records`, which waits there for records; aiokafka reads an empty set as "every
    partition". At a rebalance Faust pauses every assigned partition (the set empties) while
    their recovery runs, so a wait begun before then handed out the records just fetched for the
    newly assigned partitions; Faust drops records of paused partitions, and their positions had
    moved on: the new owner began at the log's end, and the open utterances of its calls lost
    seconds of audio ("chunks 427..869 never came" in tests/faults/test_rolling_upgrade.py, 2 of
    ~14 runs). Each look at the set now sees it as it is then, empty meaning none."""
    thread_class = AIOKafkaConsumerThread
    if getattr(thread_class._fetch_records, "active_only", False):
        return
    original = thread_class._fetch_records

    async def _fetch_records(self: Any, consumer: Any, active_partitions: Any, **kwargs: Any) -> Any:
        if active_partitions is not None:  # (None: a client-only app, which reads every partition)
            active_partitions = _ActiveNow(active_partitions)
        return await original(self, consumer, active_partitions, **kwargs)

    _fetch_records.active_only = True
    _fetch_records.faust_own = original
    thread_class._fetch_records = _fetch_records


class _ActiveNow:
    """Faust's live set of active partitions, as aiokafka's `fetched_records` reads its
    `partitions`: never false (false there means every partition), membership as it is now."""

    def __init__(self, active: Any) -> None:
        self._active = active

    def __bool__(self) -> bool:
        return True

    def __contains__(self, tp: Any) -> bool:
        return tp in self._active


def commit_only_past_acknowledged() -> None:
    """Faust commits a partition only up to the first record it handed out that is neither
    acknowledged nor gone (its lowest offset still in `Consumer._unacked_messages`, or given up:
    `give_up`). Idempotent.

    Why: Faust's `Consumer._new_offset` commits the first run of consecutive acknowledged offsets
    when it starts at most one past the committed offset, and any run when nothing was committed:
    so the record *at* the committed offset (the next to read), or every record before the run,
    could be passed while still held. The worker holds records for seconds, stream by stream
    (streams/core/checkpoints.py), so another stream's later records are acknowledged first; a
    commit past a held record made its partition's next owner skip that audio (39 of 500 streams
    in scripts/failover_probe.py). Offsets with no record (compaction, retention) stay as Faust
    has them."""
    if getattr(Consumer._new_offset, "past_acknowledged_only", False):
        return
    original = Consumer._new_offset

    def _new_offset(self: Any, tp: TP) -> int | None:
        pending = [message.offset for message in list(self._unacked_messages)
                   if message.tp == tp and not message.acked]
        given_up = getattr(self, "_given_up", {}).get(tp)
        floor = min(pending + ([given_up] if given_up is not None else []), default=None)
        if floor is None:
            return original(self, tp)
        kept = (list(self._acked[tp]), set(self._acked_index[tp]), self._gap[tp].copy())
        offset = original(self, tp)
        if offset is not None and offset > floor:  # past a record still held: commit nothing yet
            self._acked[tp], self._acked_index[tp], self._gap[tp] = kept
            return None
        return offset

    _new_offset.past_acknowledged_only = True
    _new_offset.faust_own = original
    Consumer._new_offset = _new_offset
