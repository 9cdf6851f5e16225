"""A stream's table changes between its checkpoints: kept in the worker, written when they matter.

Each batch changes the state record and audio blocks of its streams. Writing them all to the
table at the end of every batch (a batch every ~50 ms when the model keeps up) copied each audio
byte into the table's changelog several times over: 12.5 changelog bytes per audio byte for a
G.711 call, 4.6 for 16 kHz PCM (issue 26, measured by `callstt bench`). Instead:

  - Audio blocks (`A|` keys) and the resampler states before them (`R|`) never reach the table:
    they stay here, in the worker, while a kept block needs them (audio by reference: the audio
    topic has their chunks, streams/core/assembly.py decodes them again after a takeover).
  - A stream's state record changes wait here too (every read of the worker goes through
    `read`), and the stream is *checkpointed*, its waiting changes written to the table, when
    that bounds what a successor would repeat after a crash: when the stream ended or was
    forgotten (the agent asks), when an idle flush or evict request reached it (the idle timer
    asks), when `interval_ms` passed since its first change waiting here, and at a rebalance.

The records that led to a stream's changes are *held* (not committable) until the checkpoint
that has their effect is acknowledged by the broker, and beyond it while their audio is in a kept
block (`needed`: the seqs of the chunks behind the stream's kept blocks). After a crash the
successor reads them again from the committed offset; the same chunks give the same blocks, cuts
and transcript ids, and those the checkpoint already had are duplicates to the sequencer.

    checkpoints = Checkpoints(read_table, partition_of=lambda event: event.message.partition,
                              needed=lambda state: StreamState.from_bytes(state).needed_seqs)
    checkpoints.add(batch.changes(), held={"S|call|caller": [(event, seq), ...]}, now_ms=now)
    writes, records = checkpoints.take(checkpoints.due(now_ms, asked={"S|call|caller"}), now_ms)
    ...  # write `writes` to the table, wait for the broker's acknowledgement, release `records`

Pure: no Kafka here (streams/worker/agent.py does the writing and releasing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Read = Callable[[str], "bytes | None"]


Needed = Callable[[bytes], range]  # a stream's state record -> the seqs whose records stay held


def stream_of(key: str) -> str:
    """The checkpoint unit a table key belongs to: its stream's state key for `S|call|stream`,
    its audio blocks `A|call|stream|n` and their resampler states `R|call|stream|n`; any other
    key (a call's settings, `C|call`) is its own."""
    if is_kept_here(key):
        call_and_stream, _, _ = key[2:].rpartition("|")
        return "S|" + call_and_stream
    return key


def is_kept_here(key: str) -> bool:
    """Whether a key stays in the worker (audio by reference), never written to the table."""
    return key.startswith(("A|", "R|"))


class Checkpoints:
    """The changes not yet in the table, per stream, and the records they hold back."""

    def __init__(self, read_table: Read, partition_of: Callable[[Any], int], interval_ms: int = 10_000,
                 needed: Needed = lambda state: range(0), bind: Callable[[Any], None] = lambda record: None) -> None:
        self._read_table = read_table
        self._partition_of = partition_of
        self._needed = needed
        # A table read goes to the partition of the record being handled: `bind(owner)` makes the
        # key's own record that one before this layer reads the table outside a record's handling.
        self._bind = bind
        self._needs: dict[str, range] = {}  # stream -> the seqs its last checkpointed state needs
        self.interval_ms = interval_ms
        self._kept: dict[str, bytes] = {}  # audio blocks and resampler states: never in the table
        self._kept_keys: dict[str, set[str]] = {}  # stream -> its keys in `_kept`
        self._partition: dict[str, int] = {}  # stream -> its partition (known from its records)
        self._values: dict[str, bytes | None] = {}  # key -> latest value (None: delete)
        self._owner: dict[str, Any] = {}  # key -> the record whose partition the key lives in
        self._new: set[str] = set()  # waiting keys the table does not have: a delete just forgets them
        self._keys: dict[str, set[str]] = {}  # stream -> its waiting keys
        # stream -> (record, its chunk's seq or None) not committable before its checkpoint
        self._held: dict[str, list[tuple[Any, int | None]]] = {}
        self._since_ms: dict[str, int] = {}  # stream -> when its oldest waiting change came

    def read(self, key: str) -> bytes | None:
        """A key as the worker left it: kept here, or its waiting value, else the table's."""
        if key in self._kept:
            return self._kept[key]
        if key in self._values:
            return self._values[key]
        return self._read_table(key)

    def add(self, changes: Iterable[tuple[str, bytes | None, Any]], held: dict[str, list[tuple[Any, int | None]]],
            now_ms: int) -> None:
        """A finished batch's changes (key, value or None, owner record), and its records per
        stream (those whose effect the changes carry, with their chunk's seq: None for others)."""
        for key, value, owner in changes:
            stream = stream_of(key)
            self._partition[stream] = self._partition_of(owner)
            if is_kept_here(key) and (value is not None or key in self._kept):
                self._keep(key, stream, value)
                continue
            self._bind(owner)
            if key not in self._values and self._read_table(key) is None:
                if value is None:
                    continue  # the table never had it: no tombstone
                self._new.add(key)
            elif value is None and key in self._new:
                self._forget(key, stream)  # written and deleted between checkpoints
                continue
            self._values[key], self._owner[key] = value, owner
            self._keys.setdefault(stream, set()).add(key)
            self._since_ms.setdefault(stream, now_ms)
        for stream, records in held.items():
            self._held.setdefault(stream, []).extend(records)
            self._since_ms.setdefault(stream, now_ms)

    def _keep(self, key: str, stream: str, value: bytes | None) -> None:
        if value is None:
            del self._kept[key]
            self._kept_keys[stream].discard(key)
        else:
            self._kept[key] = value
            self._kept_keys.setdefault(stream, set()).add(key)

    def _forget(self, key: str, stream: str) -> None:
        del self._values[key], self._owner[key]
        self._new.discard(key)
        self._keys[stream].discard(key)

    def due(self, now_ms: int, asked: Iterable[str] = ()) -> list[str]:
        """The streams to checkpoint now: those asked for that have anything waiting, and those
        whose oldest waiting change is `interval_ms` old. (Streams wait in the order their first
        change came, so only the overdue ones are looked at: this runs at the end of every batch,
        with up to CALLSTT_MAX_STREAMS streams waiting.)"""
        due = {stream: None for stream in asked if stream in self._since_ms}  # (a dict keeps their order)
        for stream, since in self._since_ms.items():
            if now_ms - since < self.interval_ms:
                break
            due.setdefault(stream)
        return list(due)

    def take(self, streams: Iterable[str], now_ms: int) -> tuple[list[tuple[str, bytes | None, Any]], list[Any]]:
        """The writes that checkpoint `streams` (key, value or None, owner record) and the records
        to release once the broker has them; both leave this layer (the table has them next).
        A record whose chunk is behind a kept block stays held (its stream waits again)."""
        writes, records = [], []
        for stream in list(streams):
            if stream in self._values:  # its state changed since its last checkpoint
                state = self._values[stream]
                self._needs[stream] = self._needed(state) if state is not None and stream.startswith("S|") \
                    else range(0)
            needed = self._needs.get(stream, range(0))
            for key in sorted(self._keys.pop(stream, ())):
                writes.append((key, self._values.pop(key), self._owner.pop(key)))
                self._new.discard(key)
            still = []
            for record, seq in self._held.pop(stream, []):
                if seq is not None and seq in needed:
                    still.append((record, seq))
                else:
                    records.append(record)
            self._since_ms.pop(stream, None)
            if still:
                self._held[stream] = still
                self._since_ms[stream] = now_ms
            elif not self._kept_keys.get(stream):
                self._kept_keys.pop(stream, None)
                self._partition.pop(stream, None)
                self._needs.pop(stream, None)
        return writes, records

    def give_up_needed(self) -> list[Any]:
        """Every record still held for its audio, no longer held: while Faust waits for every
        record it handed out (a rebalance, a stop), they are neither released (their audio is
        not in the table) nor kept (the wait would not end). Their partitions' next owner (this
        worker again, perhaps) reads them again from the committed offset."""
        records = [record for held in self._held.values() for record, _ in held]
        for stream in list(self._held):
            if stream not in self._keys:
                self._since_ms.pop(stream, None)
        self._held.clear()
        return records

    def streams(self) -> list[str]:
        """Every stream with changes or records waiting."""
        return list(self._since_ms)

    def drop(self, partitions: set[int]) -> int:
        """Forget what waits for `partitions`, and their streams' kept audio (revoked: their next
        owner reads them from the changelog and the committed offset); their records are never
        released. Returns how many records were dropped."""
        gone = [stream for stream, partition in self._partition.items() if partition in partitions]
        dropped = 0
        for stream in gone:
            for key in list(self._keys.pop(stream, ())):
                del self._values[key], self._owner[key]
                self._new.discard(key)
            for key in self._kept_keys.pop(stream, ()):
                del self._kept[key]
            dropped += len(self._held.pop(stream, []))
            self._since_ms.pop(stream, None)
            self._needs.pop(stream, None)
            del self._partition[stream]
        return dropped

    def waiting(self, stream: str) -> bool:
        """Whether the stream (its state key) has changes or records waiting for a checkpoint."""
        return stream in self._since_ms

    @property
    def held(self) -> int:
        """How many records wait for their stream's checkpoint (or while their audio is kept)."""
        return sum(len(records) for records in self._held.values())

