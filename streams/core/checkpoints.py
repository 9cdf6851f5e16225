"""A stream's table changes between its checkpoints: kept in the worker, written when they matter.

Each batch changes the state record and audio blocks of its streams. Writing them all to the
table at the end of every batch (a batch every ~50 ms when the model keeps up) copied each audio
byte into the table's changelog several times over: 8 changelog bytes per audio byte for a
G.711 call, 3.5 for 16 kHz PCM (issue 26, measured by `callstt bench`). Instead the changes
wait here, in front of the table (every read of the worker goes through `read`), and a stream
is *checkpointed*, its waiting changes written to the table, when that bounds what a successor
would repeat after a crash:

  - a final of the stream was published, or the stream ended or was forgotten (the agent asks);
  - an idle flush or evict request reached it (the idle timer asks for quiet streams);
  - `interval_ms` passed since its first change waiting here.

The records that led to a stream's waiting changes are *held* (not committable) until the
checkpoint that has their effect is acknowledged by the broker. After a crash the successor reads
them again from the committed offset; the same chunks give the same cuts and transcript ids, and
those the checkpoint already had are dropped as duplicates by their sequence numbers. Audio blocks
written and deleted between two checkpoints never reach the changelog, nor does a tombstone for a
key the table never had.

    checkpoints = Checkpoints(read_table, partition_of=lambda event: event.message.partition)
    checkpoints.add(batch.changes(), held={"S|call|caller": [event, ...]})
    writes, records = checkpoints.take(checkpoints.due(now_ms, asked={"S|call|caller"}))
    ...  # write `writes` to the table, wait for the broker's acknowledgement, release `records`

Pure: no Kafka here (streams/worker/agent.py does the writing and releasing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Read = Callable[[str], "bytes | None"]


def stream_of(key: str) -> str:
    """The checkpoint unit a table key belongs to: its stream's state key for `S|call|stream`
    and the audio blocks `A|call|stream|n`; any other key (a call's settings, `C|call`) is its own."""
    if key.startswith("A|"):
        call_and_stream, _, _ = key[2:].rpartition("|")
        return "S|" + call_and_stream
    return key


class Checkpoints:
    """The changes not yet in the table, per stream, and the records they hold back."""

    def __init__(self, read_table: Read, partition_of: Callable[[Any], int], interval_ms: int = 5000) -> None:
        self._read_table = read_table
        self._partition_of = partition_of
        self.interval_ms = interval_ms
        self._values: dict[str, bytes | None] = {}  # key -> latest value (None: delete)
        self._owner: dict[str, Any] = {}  # key -> the record whose partition the key lives in
        self._new: set[str] = set()  # waiting keys the table does not have: a delete just forgets them
        self._keys: dict[str, set[str]] = {}  # stream -> its waiting keys
        self._held: dict[str, list[Any]] = {}  # stream -> records not committable before its checkpoint
        self._since_ms: dict[str, int] = {}  # stream -> when its oldest waiting change came

    def read(self, key: str) -> bytes | None:
        """A key as the worker left it: its waiting value, else the table's."""
        if key in self._values:
            return self._values[key]
        return self._read_table(key)

    def add(self, changes: Iterable[tuple[str, bytes | None, Any]], held: dict[str, list[Any]], now_ms: int) -> None:
        """A finished batch's changes (key, value or None, owner record), and its records per
        stream (those whose effect the changes carry)."""
        for key, value, owner in changes:
            stream = stream_of(key)
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

    def take(self, streams: Iterable[str]) -> tuple[list[tuple[str, bytes | None, Any]], list[Any]]:
        """The writes that checkpoint `streams` (key, value or None, owner record) and the records
        to release once the broker has them; both leave this layer (the table has them next)."""
        writes, records = [], []
        for stream in list(streams):
            for key in sorted(self._keys.pop(stream, ())):
                writes.append((key, self._values.pop(key), self._owner.pop(key)))
                self._new.discard(key)
            records += self._held.pop(stream, [])
            self._since_ms.pop(stream, None)
        return writes, records

    def streams(self) -> list[str]:
        """Every stream with changes or records waiting."""
        return list(self._since_ms)

    def drop(self, partitions: set[int]) -> int:
        """Forget what waits for `partitions` (revoked: their next owner reads them from the
        changelog and the committed offset); their records are never released. Returns how many
        records were dropped."""
        owners = {stream: [*(self._owner[key] for key in self._keys.get(stream, ())), *self._held.get(stream, [])]
                  for stream in self._since_ms}
        gone = [stream for stream, records in owners.items()
                if any(self._partition_of(record) in partitions for record in records)]
        dropped = 0
        for stream in gone:
            for key in list(self._keys.get(stream, ())):
                self._forget(key, stream)
            self._keys.pop(stream, None)
            dropped += len(self._held.pop(stream, []))
            self._since_ms.pop(stream, None)
        return dropped

    def waiting(self, stream: str) -> bool:
        """Whether the stream (its state key) has changes or records waiting for a checkpoint."""
        return stream in self._since_ms

    @property
    def held(self) -> int:
        """How many records wait for their stream's checkpoint."""
        return sum(len(records) for records in self._held.values())

