"""TableBatch (streams/core/batch.py): a batch of events leaves the table exactly as handling the
same events one at a time does, with fewer writes, and reads see the batch's own changes."""

from __future__ import annotations

import random

import numpy as np
import pytest

from callstt.models.voices.synth import ENGLISH_SENTENCES, conversation
from callstt.streams.client.producer import ChunkPlan, iter_chunks
from callstt.streams.core.assembly import StreamAssembler, StreamState, state_key
from callstt.streams.core.batch import TableBatch


class Event:
    """What TableBatch needs of a Faust event: an identity and a partition."""

    def __init__(self, partition: int) -> None:
        self.partition = partition


@pytest.fixture(scope="module")
def two_calls():
    """Two interleaved 8 kHz mu-law calls with three sentences each: chunk lists with their partition."""
    chunks = []
    for number, partition in ((1, 0), (2, 3)):
        audio = conversation(ENGLISH_SENTENCES[number:number + 3], sample_rate=8000, silence_s=1.0)
        chunks.append([(partition, chunk) for chunk in iter_chunks(audio, f"call-{number}", "caller",
                                                                   ChunkPlan(8000, "MULAW", 20), start_ms=0)])
    first, second = chunks
    merged = []
    while first or second:  # the calls interleave as they would on a topic
        for side in (first, second):
            if side:
                merged.append(side.pop(0))
    return merged


def run_one_at_a_time(assembler, events):
    table: dict[str, bytes] = {}
    writes = 0
    utterances = []
    for partition, chunk in events:
        raw = table.get(state_key(chunk.call_id, chunk.stream_id))
        state = StreamState.from_bytes(raw) if raw else assembler.new_state(chunk.call_id, chunk.stream_id)
        outcome = assembler.accept(state, chunk, 1000, table.get)
        utterances += outcome.utterances
        for key in outcome.deletes:
            table.pop(key, None)
        table.update(outcome.writes)
        writes += sum(len(value) for value in outcome.writes.values())
        key = state_key(chunk.call_id, chunk.stream_id)
        if outcome.forgotten:
            table.pop(key, None)
        else:
            outcome.state.partition = partition
            table[key] = outcome.state.to_bytes()
            writes += len(table[key])
    return table, writes, utterances


def run_in_batches(assembler, events, batch_sizes):
    table: dict[str, bytes] = {}
    owners: dict[str, int] = {}
    writes = 0
    utterances = []
    position = 0
    while position < len(events):
        size = batch_sizes()
        batch = TableBatch(read=table.get)
        for partition, chunk in events[position:position + size]:
            state = batch.state(chunk.call_id, chunk.stream_id) or assembler.new_state(chunk.call_id, chunk.stream_id)
            outcome = assembler.accept(state, chunk, 1000, batch.read)
            batch.record(outcome, Event(partition))
            utterances += outcome.utterances
        for key, value, event in batch.changes(partition_of=lambda event: event.partition):
            writes += len(value or b"")
            owners[key] = event.partition
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        position += size
    return table, writes, utterances, owners


def test_batches_leave_the_table_as_one_at_a_time_does(two_calls):
    assembler = StreamAssembler()
    middle = len(two_calls) * 2 // 3  # stop mid-call: state and audio blocks are still in the table
    expected, single_writes, single_utterances = run_one_at_a_time(assembler, two_calls[:middle])
    rng = random.Random(3)
    table, batch_writes, batch_utterances, owners = run_in_batches(assembler, two_calls[:middle],
                                                                   lambda: rng.randint(1, 120))
    assert table.keys() == expected.keys()
    assert any(key.startswith("A|") for key in table) and any(key.startswith("S|") for key in table)
    for key in expected:
        if key.startswith("S|"):
            assert StreamState.from_bytes(table[key]) == StreamState.from_bytes(expected[key])
        else:
            assert table[key] == expected[key]
    # Every key is written in its own call's partition (Faust routes by the bound event).
    for key, partition in owners.items():
        assert partition == (0 if "|call-1|" in key else 3), key
    assert [(u.call_id, u.index, u.start_ms, u.end_ms) for u in batch_utterances] == \
        [(u.call_id, u.index, u.start_ms, u.end_ms) for u in single_utterances]
    assert len(batch_utterances) >= 2
    for ours, theirs in zip(batch_utterances, single_utterances):
        assert np.array_equal(ours.audio, theirs.audio)
    print(f"bytes written to the table: one at a time {single_writes}, in batches {batch_writes}")
    assert batch_writes < single_writes / 3  # a stream's state is written once per batch, not per chunk


def test_an_ended_stream_leaves_only_its_small_ended_record(two_calls):
    assembler = StreamAssembler()
    table, _, utterances, _ = run_in_batches(assembler, two_calls, lambda: 200)
    # Both calls ended: no audio block left, each stream's ended record only (for duplicates).
    assert sorted(table) == ["S|call-1|caller", "S|call-2|caller"]
    assert all(StreamState.from_bytes(raw).ended and len(raw) < 600 for raw in table.values())
    assert {u.call_id for u in utterances} == {"call-1", "call-2"}


def test_reads_see_the_batch_own_changes():
    table = {"A|c|s|1": b"old", "S|c|s": StreamState("c", "s").to_bytes()}
    batch = TableBatch(read=table.get)
    state = batch.state("c", "s")
    assert state == StreamState("c", "s")
    from callstt.streams.core.assembly import Outcome

    newer = StreamState("c", "s", position=160)
    batch.record(Outcome(state=newer, writes={"A|c|s|2": b"new"}, deletes=["A|c|s|1"]), Event(5))
    assert batch.read("A|c|s|2") == b"new" and batch.read("A|c|s|1") is None
    assert batch.state("c", "s") is newer
    changes = {key: (value, event.partition) for key, value, event in batch.changes(lambda e: e.partition)}
    assert changes["A|c|s|1"] == (None, 5) and changes["A|c|s|2"] == (b"new", 5)
    assert StreamState.from_bytes(changes["S|c|s"][0]).partition == 5
    assert table["A|c|s|1"] == b"old"  # nothing reaches the table before the caller applies the changes


def test_a_batch_taken_while_the_previous_waits_reads_through_it(two_calls):
    """The worker keeps reading while a batch is in the model: the next batch reads through the
    running one's unwritten changes (`read_latest`), and after those reach the table reads the
    table again (`read_from`). The table ends as one at a time leaves it, with the same utterances."""
    assembler = StreamAssembler()
    middle = len(two_calls) * 2 // 3
    expected, _, single_utterances = run_one_at_a_time(assembler, two_calls[:middle])
    table: dict[str, bytes] = {}
    utterances = []
    running: TableBatch | None = None
    rng = random.Random(5)
    position = 0
    while position < middle:
        size = rng.randint(1, 150)
        batch = TableBatch(read=running.read_latest if running else table.get)
        for partition, chunk in two_calls[position:min(position + size, middle)]:
            state = batch.state(chunk.call_id, chunk.stream_id) or assembler.new_state(chunk.call_id, chunk.stream_id)
            outcome = assembler.accept(state, chunk, 1000, batch.read)
            batch.record(outcome, Event(partition))
            utterances += outcome.utterances
        position += size
        if running is not None:  # the running batch is done: its changes reach the table first
            for key, value, _ in running.changes(partition_of=lambda event: event.partition):
                table.pop(key, None) if value is None else table.__setitem__(key, value)
            batch.read_from(table.get)
        running = batch
    for key, value, _ in running.changes(partition_of=lambda event: event.partition):
        table.pop(key, None) if value is None else table.__setitem__(key, value)
    assert table.keys() == expected.keys()
    for key in expected:
        if key.startswith("S|"):
            assert StreamState.from_bytes(table[key]) == StreamState.from_bytes(expected[key])
        else:
            assert table[key] == expected[key]
    assert [(u.call_id, u.index, u.start_ms, u.end_ms) for u in utterances] == \
        [(u.call_id, u.index, u.start_ms, u.end_ms) for u in single_utterances]
