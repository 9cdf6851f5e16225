"""The private Faust/aiokafka internals streams/worker/faust_compat.py relies on still exist.

An upgrade that removes one must fail here, by name, not as a worker that silently writes
table state to the wrong partition or commits offsets too early."""

from __future__ import annotations

import contextvars
import inspect

import aiokafka
import faust.streams
from faust.transport.consumer import Consumer
from faust.types import Message


def test_faust_current_event_is_a_context_variable():
    assert isinstance(faust.streams._current_event, contextvars.ContextVar)


def test_faust_messages_count_references():
    assert callable(Message.incref) and callable(Message.decref)
    message = Message("topic", 0, 0, 0.0, 0, None, b"k", b"v", None)
    message.incref()
    message.decref()


def test_faust_consumer_keeps_read_offsets():
    assert "self._read_offset" in inspect.getsource(Consumer)


def test_aiokafka_consumer_has_a_client_that_refreshes_metadata():
    assert "self._client = AIOKafkaClient(" in inspect.getsource(aiokafka.AIOKafkaConsumer.__init__)
    assert callable(aiokafka.AIOKafkaClient.force_metadata_update)


def test_aiokafka_fetches_all_metadata_as_topics_does():
    """streams/worker/faust_compat.py topic_partitions makes the request `topics()` makes and keeps
    the counts: the same client call, and the metadata object it returns."""
    from aiokafka.client import AIOKafkaClient
    from aiokafka.cluster import ClusterMetadata

    assert "await self._client.fetch_all_metadata()" in inspect.getsource(aiokafka.AIOKafkaConsumer.topics)
    assert "return cluster_md" in inspect.getsource(AIOKafkaClient.fetch_all_metadata)
    assert callable(ClusterMetadata.partitions_for_topic) and callable(ClusterMetadata.topics)


def test_faust_tables_send_their_changes_through_send_changelog():
    """AcknowledgedTable keeps each change's future by overriding send_changelog."""
    from faust.tables.table import Table
    assert "self.send_changelog(" in inspect.getsource(Table.on_key_set)
    assert "self.send_changelog(" in inspect.getsource(Table.on_key_del)


def test_faust_recovery_resumes_stream_partitions_and_seeks_them_as_the_patch_expects():
    """seek_before_resuming_streams wraps these two steps: each must still resume the stream
    partitions through `consumer.resume_partitions` and seek through `consumer.perform_seek()`."""
    from faust.tables.recovery import Recovery

    from callstt.streams.worker.faust_compat import seek_before_resuming_streams

    seek_before_resuming_streams()
    for step in (Recovery.on_recovery_completed, Recovery._resume_streams):
        assert step.seeks_first
        source = inspect.getsource(_wrapped(step))
        assert "consumer.resume_partitions(" in source and "consumer.perform_seek()" in source


def _wrapped(step):
    """The Faust function a seeks_first wrapper wraps."""
    return next(cell.cell_contents for cell in step.__closure__ if inspect.isfunction(cell.cell_contents))


def test_the_stream_partitions_are_resumed_only_once_the_seek_is_done():
    """...and once any partition whose fetch position moved off its committed offset meanwhile
    is put back there."""
    import asyncio
    import logging

    from aiokafka import TopicPartition

    from faust.types import TP

    from callstt.streams.worker.faust_compat import _seeking_first

    calls = []

    class Thread:
        async def position(self, tp):
            return {TopicPartition("audio", 0): 7, TopicPartition("audio", 1): 12}[tp]  # 1 moved past 9

    class Consumer:
        _committed_offset = {TP("audio", 0): 7, TP("audio", 1): 9}  # committed: none is sought to its beginning
        _thread = Thread()
        log = logging.getLogger("test")

        def resume_partitions(self, tps):
            calls.append(("resume", tps))

        async def perform_seek(self):
            calls.append(("seek", None))

        async def seek_wait(self, offsets):
            calls.append(("put back", offsets))

        def assignment(self):
            return {TP("audio", 0), TP("audio", 1)}

    class App:
        consumer = Consumer()
        tables = type("Tables", (), {"changelog_topics": set()})()

    async def faust_step(self):  # Faust's order: resume, then seek
        self.app.consumer.resume_partitions({"audio-0"})
        await self.app.consumer.perform_seek()
        calls.append(("ready", None))

    recovery = type("Recovery", (), {"app": App()})()
    asyncio.run(_seeking_first(faust_step)(recovery))
    assert calls == [("seek", None), ("put back", {TopicPartition("audio", 1): 9}), ("resume", {"audio-0"}),
                     ("ready", None)]
    assert App.consumer.resume_partitions.__func__ is Consumer.resume_partitions  # the wrapper is gone again


def test_the_tables_open_rocksdb_with_small_buffers(tmp_path):
    """Faust passes a table's `options` to its RocksDB store: the worker's databases get
    ROCKSDB_OPTIONS, not Faust's 64 MB x 3 write buffers and 2 GB block cache per partition."""
    import faust

    from callstt.streams.worker.faust_compat import ROCKSDB_OPTIONS, AcknowledgedTable

    app = faust.App("rocksdb-options", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path))
    options = AcknowledgedTable.add_to(app, "streams", 3).data.rocksdb_options
    assert (options.write_buffer_size, options.max_write_buffer_number, options.block_cache_size) == \
        (ROCKSDB_OPTIONS["write_buffer_size"], ROCKSDB_OPTIONS["max_write_buffer_number"],
         ROCKSDB_OPTIONS["block_cache_size"]) == (4 << 20, 2, 8 << 20)


def test_faust_waits_for_every_record_handed_out_before_a_revocation_and_the_worker_checkpoints_first():
    """The worker holds records until their stream's checkpoint; Faust's revocation waits for
    them in `Consumer.wait_empty`, which must run the worker's `begin` first and `end` after."""
    import asyncio
    import types

    import faust

    from callstt.streams.worker.faust_compat import checkpoint_while_waiting

    assert "_consumer_wait_empty" in inspect.getsource(faust.App._on_partitions_revoked)
    assert "consumer.wait_empty()" in inspect.getsource(faust.App._consumer_wait_empty)
    calls = []
    app = faust.App("wait-empty-hook", broker="kafka://127.0.0.1:1")

    async def begin():
        calls.append("begin: checkpoint everything")

    checkpoint_while_waiting(app, begin, lambda: calls.append("end"))
    checkpoint_while_waiting(app, begin, lambda: calls.append("end"))  # idempotent: wrapped once
    quiet_log = types.SimpleNamespace(dev=lambda *args: None)
    consumer = type("FakeConsumer", (), {"app": app, "should_stop": False, "_unacked_messages": set(),
                                         "log": quiet_log, "diag": types.SimpleNamespace(
                                             set_flag=lambda flag: None, unset_flag=lambda flag: None),
                                         "commit_and_end_transactions": lambda self: asyncio.sleep(0)})()
    asyncio.run(Consumer.wait_empty(consumer))
    assert calls == ["begin: checkpoint everything", "end"]


def test_partitions_never_committed_are_sought_to_their_beginning_which_counts_as_committed():
    """The internals `seek_never_committed_to_beginning` uses exist, and it seeks exactly the
    assigned stream partitions without a committed offset (not the tables' changelogs) to their
    earliest offset, which then counts as their committed one."""
    import asyncio
    import types

    from aiokafka import TopicPartition
    from faust.tables.manager import TableManager
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
    from faust.types import TP

    from callstt.streams.worker.faust_compat import seek_never_committed_to_beginning

    assert callable(AIOKafkaConsumerThread.earliest_offsets) and callable(Consumer.seek_wait)
    assert "changelog_topics" in dir(TableManager) and "self._committed_offset" in inspect.getsource(Consumer)
    sought = []

    async def earliest_offsets(*partitions):
        assert all(isinstance(tp, TopicPartition) for tp in partitions)
        return {tp: 7 for tp in partitions}

    async def seek_wait(offsets):
        sought.append(offsets)

    consumer = types.SimpleNamespace(
        assignment=lambda: {TP("audio", 0), TP("audio", 1), TP("w-streams-changelog", 1)},
        _committed_offset={TP("audio", 0): 42}, _thread=types.SimpleNamespace(earliest_offsets=earliest_offsets),
        seek_wait=seek_wait)
    app = types.SimpleNamespace(consumer=consumer, tables=types.SimpleNamespace(changelog_topics={"w-streams-changelog"}))
    asyncio.run(seek_never_committed_to_beginning(app))
    assert sought == [{TopicPartition("audio", 1): 7}]
    assert consumer._committed_offset == {TP("audio", 0): 42, TP("audio", 1): 7}


def test_faust_commits_a_partition_only_up_to_its_first_record_not_acknowledged():
    """Faust's own `_new_offset` commits past the record at the committed offset while it is
    held (another stream's later records acknowledged first); with the patch the commit waits
    for it, and for a record given up, and the acknowledgements are kept for later."""
    import faust
    from faust.types import TP
    from faust.types.tuples import Message

    from callstt.streams.worker.faust_compat import commit_only_past_acknowledged

    app = faust.App("commit-rule", broker="kafka://127.0.0.1:1")
    consumer = app.consumer
    tp = TP("audio", 0)

    def record(offset: int) -> Message:
        return Message("audio", 0, offset, 0.0, 0, {}, b"call", b"chunk", None)

    held = record(10)
    consumer._committed_offset[tp] = 10
    consumer._unacked_messages.add(held)
    consumer._acked[tp], consumer._acked_index[tp] = [11, 12], {11, 12}
    faust_own = getattr(Consumer._new_offset, "faust_own", Consumer._new_offset)
    assert faust_own(consumer, tp) == 13  # Faust's own rule: past record 10, still held
    consumer._acked[tp], consumer._acked_index[tp] = [11, 12], {11, 12}
    commit_only_past_acknowledged()
    commit_only_past_acknowledged()  # idempotent: wrapped once
    assert Consumer._new_offset(consumer, tp) is None
    assert consumer._acked[tp] == [11, 12]  # kept for the commit after record 10's
    held.acked = True
    consumer._acked[tp].append(10)
    consumer._acked_index[tp].add(10)
    assert Consumer._new_offset(consumer, tp) == 13
    # A record given up (a rebalance while it was held) is never passed either.
    consumer._committed_offset[tp] = 20
    consumer._given_up = {tp: 20}
    consumer._acked[tp], consumer._acked_index[tp] = [21], {21}
    assert Consumer._new_offset(consumer, tp) is None


def test_the_consumer_thread_hands_out_only_partitions_active_at_that_moment():
    """aiokafka's `fetched_records` reads an empty set of partitions as "every partition", and
    Faust hands it its live set of active partitions, which a rebalance empties (every assigned
    partition paused) while the call waits for records. With the patch the thread's look at the
    set is never "every partition", and sees each partition as active or not at that moment."""
    import asyncio
    import contextlib
    import types

    from aiokafka.consumer.fetcher import Fetcher
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
    from faust.types import TP

    from callstt.streams.worker.faust_compat import fetch_only_active_partitions

    assert "if partitions and tp not in partitions" in inspect.getsource(Fetcher.fetched_records)
    faust_own = getattr(AIOKafkaConsumerThread._fetch_records, "faust_own", AIOKafkaConsumerThread._fetch_records)
    assert "fetcher.fetched_records(" in inspect.getsource(faust_own)
    fetch_only_active_partitions()
    fetch_only_active_partitions()  # idempotent: wrapped once
    active = {TP("audio", 0), TP("audio", 1)}
    looks = []

    async def fetched_records(partitions, timeout=0, max_records=None):
        looks.append((bool(partitions), TP("audio", 0) in partitions))
        active.clear()  # the rebalance pauses every partition while the call waits
        looks.append((bool(partitions), TP("audio", 0) in partitions, TP("audio", 1) in partitions))
        return {}

    fetcher = types.SimpleNamespace(_closed=False, fetched_records=fetched_records,
                                    _subscriptions=types.SimpleNamespace(fetch_context=contextlib.nullcontext))
    aiokafka_consumer = types.SimpleNamespace(_closed=False, _fetcher=fetcher)
    thread = types.SimpleNamespace(consumer=types.SimpleNamespace(flow_active=True))
    asyncio.run(AIOKafkaConsumerThread._fetch_records(thread, aiokafka_consumer, active, timeout=1, max_records=10))
    assert looks == [(True, True), (True, False, False)]  # (Faust's own: False there meant every partition)
