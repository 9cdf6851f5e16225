"""The table changes of one batch of events, held back until the batch's transcripts are acknowledged.

The agent takes events in batches (so that utterances ready at the same moment, across calls,
meet the model together: models/asr/batching.py). Within a batch, a stream's second chunk must see
what its first chunk did, yet nothing may reach the table before the transcripts that the
changes lead to are acknowledged (a crash then repeats work, it never skips it). So each event
reads through this overlay, and the overlay is written to the table once, at the end:

    batch = TableBatch(read=table_get)
    state = batch.state(call_id, stream_id)      # the batch's latest, else the table's
    outcome = assembler.accept(state, chunk, now, batch.read)
    batch.record(outcome, event)
    ...                                           # transcribe, publish, await acks
    for key, value, event in batch.changes():    # value None: delete
        ...

Coalescing is also a saving: a stream's state is encoded once per batch rather than once per
chunk, and an audio block written and deleted within one batch never reaches the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from callstt.streams.core.assembly import Outcome, StreamState, state_key


class TableBatch:
    """Reads through to the table; writes wait in memory, in the order they were made."""

    def __init__(self, read: Callable[[str], bytes | None]) -> None:
        self._read = read
        self._values: dict[str, bytes | None] = {}  # key -> bytes, or None for a delete
        self._states: dict[str, StreamState | None] = {}  # state key -> latest state (None: forgotten)
        self._owner: dict[str, Any] = {}  # key -> the event whose partition the key lives in
        self._new_keys: set[str] = set()  # first written by this batch: a delete just forgets them
        self.outcomes: list[tuple[Any, Outcome]] = []

    def read(self, key: str) -> bytes | None:
        if key in self._values:
            return self._values[key]
        return self._read(key)

    def read_latest(self, key: str) -> bytes | None:
        """Any key as this batch leaves it, stream states included (encoded): what the next batch
        reads through while this one's changes wait for its transcripts (streams/worker/agent.py)."""
        if key in self._states:
            state = self._states[key]
            return None if state is None else state.to_bytes()
        return self.read(key)

    def read_from(self, read: Callable[[str], bytes | None]) -> None:
        """Read through `read` from now on (the batch this one read through has reached the table)."""
        self._read = read

    def states(self) -> Iterator[tuple[str, StreamState]]:
        """The streams this batch changed and their latest states (forgotten ones left out)."""
        return ((key, state) for key, state in self._states.items() if state is not None)

    def state(self, call_id: str, stream_id: str) -> StreamState | None:
        key = state_key(call_id, stream_id)
        if key in self._states:
            return self._states[key]
        raw = self._read(key)
        return StreamState.from_bytes(raw) if raw else None

    def latest_state(self, call_id: str, stream_id: str) -> StreamState | None:
        """The stream's state as this batch leaves it (None when it was forgotten or not touched)."""
        return self._states.get(state_key(call_id, stream_id))

    def record(self, outcome: Outcome, event: Any) -> None:
        """Keep an outcome's writes and its stream's new state, in event order."""
        self.outcomes.append((event, outcome))
        for key in outcome.deletes:
            self._set(key, None, event)
        for key, value in outcome.writes.items():
            self._set(key, value, event)
        key = state_key(outcome.state.call_id, outcome.state.stream_id)
        self._states[key] = None if outcome.forgotten else outcome.state
        self._owner[key] = event

    def put(self, key: str, value: bytes | None, event: Any) -> None:
        """Write (or delete, None) a key that is not a stream's, such as a call's settings."""
        self._set(key, value, event)

    def _set(self, key: str, value: bytes | None, event: Any) -> None:
        if value is None and key in self._new_keys:
            del self._values[key]  # written and deleted within the batch: the table never sees it
            self._new_keys.discard(key)
            return
        if value is not None and key not in self._values and self._read(key) is None:
            self._new_keys.add(key)  # (a replay after a crash may rewrite a block the table still has)
        self._values[key] = value
        self._owner[key] = event

    def changes(self, partition_of: Callable[[Any], int]) -> Iterator[tuple[str, bytes | None, Any]]:
        """Every key the batch changed, once, with its final value and the event it belongs to.
        States are encoded here, once each, with their partition (`partition_of(event)`)."""
        for key, value in self._values.items():
            yield key, value, self._owner[key]
        for key, state in self._states.items():
            event = self._owner[key]
            if state is None:
                yield key, None, event
            else:
                state.partition = partition_of(event)
                yield key, state.to_bytes(), event
