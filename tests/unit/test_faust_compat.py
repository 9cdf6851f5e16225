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
    import asyncio

    from callstt.streams.worker.faust_compat import _seeking_first

    calls = []

    class Consumer:
        def resume_partitions(self, tps):
            calls.append(("resume", tps))

        async def perform_seek(self):
            calls.append(("seek", None))

    class App:
        consumer = Consumer()

    async def faust_step(self):  # Faust's order: resume, then seek
        self.app.consumer.resume_partitions({"audio-0"})
        await self.app.consumer.perform_seek()
        calls.append(("ready", None))

    recovery = type("Recovery", (), {"app": App()})()
    asyncio.run(_seeking_first(faust_step)(recovery))
    assert calls == [("seek", None), ("resume", {"audio-0"}), ("ready", None)]
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
