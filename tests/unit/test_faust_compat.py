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


def test_faust_tables_send_their_changes_through_send_changelog():
    """AcknowledgedTable keeps each change's future by overriding send_changelog."""
    from faust.tables.table import Table
    assert "self.send_changelog(" in inspect.getsource(Table.on_key_set)
    assert "self.send_changelog(" in inspect.getsource(Table.on_key_del)
