"""Putting a stream's chunks back in order: duplicates, reordering, gaps and late chunks.

This module owns the per-stream ordering rules, as a pure function of a small
serialisable state (it lives in a changelog table next to the audio state):

- a chunk whose seq was already seen (released or held) is a duplicate and is ignored;
- a chunk ahead of the next expected seq by less than `window` chunks is held, and
  released as soon as the chunks before it have arrived;
- a chunk `window` or more ahead moves the window: every missing seq that falls out of
  it becomes a `Gap` (silence of the expected duration, so the stream's timeline stays
  true) and the held chunks before it are released in order;
- a chunk arriving after its seq was filled with silence is late and is dropped;
- a negative seq, or one more than `max_seq_jump` ahead, is a `BadChunk` (nothing is
  allocated for it).

Payloads are opaque bytes: the audio, or the whole encoded record when the caller needs
its other fields back on release. Only held chunks (at most window - 1) keep theirs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from callstt.models.audio.errors import BadChunk

# Gap ranges remembered to tell a late chunk from a duplicate; older gaps are forgotten
# (a chunk from one of them counts as a duplicate, and is dropped all the same).
REMEMBERED_GAPS = 16


@dataclass(frozen=True)
class SequencingConfig:
    window: int = 8  # chunks that may arrive out of order before a missing one is given up
    max_seq_jump: int = 100000  # further ahead than this is a producer bug, not a gap
    chunk_ms: float | None = None  # the streams' fixed chunk duration; None: the last chunk's duration
    first_seq: int | None = 0  # a stream's first seq; None: the first chunk seen starts the stream

    def __post_init__(self) -> None:
        if self.window < 1 or self.max_seq_jump < self.window:
            raise ValueError(f"unusable sequencing settings: {self}")


@dataclass(frozen=True)
class Ready:
    """A chunk released in order."""

    seq: int
    payload: bytes
    duration_ms: float


@dataclass(frozen=True)
class Gap:
    """`count` consecutive chunks from `first_seq` never came: play `silence_ms` of silence instead."""

    first_seq: int
    count: int
    silence_ms: float


Release = Ready | Gap


@dataclass(frozen=True)
class SequenceState:
    next_seq: int = -1  # the seq expected next; -1 until the stream's first chunk
    held: dict[int, tuple[bytes, float]] = field(default_factory=dict)  # seq -> (payload, duration_ms)
    last_duration_ms: float = 0.0  # of the most recent chunk received
    gaps: tuple[tuple[int, int], ...] = ()  # recent filled ranges, (first seq, last seq)
    duplicates: int = 0
    reordered: int = 0  # chunks that arrived ahead of a missing one and were held
    late: int = 0  # chunks dropped because their seq had been filled with silence
    missing: int = 0  # chunks filled with silence

    _HEADER = struct.Struct("<BqdqqqqHH")
    _VERSION = 1

    def to_bytes(self) -> bytes:
        parts = [self._HEADER.pack(self._VERSION, self.next_seq, self.last_duration_ms, self.duplicates,
                                   self.reordered, self.late, self.missing, len(self.gaps), len(self.held))]
        parts += [struct.pack("<qq", first, last) for first, last in self.gaps]
        for seq, (payload, duration_ms) in sorted(self.held.items()):
            parts += [struct.pack("<qdI", seq, duration_ms, len(payload)), payload]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> "SequenceState":
        (version, next_seq, last_duration_ms, duplicates, reordered, late, missing, gap_count,
         held_count) = cls._HEADER.unpack_from(data)
        if version != cls._VERSION:
            raise ValueError(f"not a version-{cls._VERSION} sequencing state")
        offset = cls._HEADER.size
        gaps = []
        for _ in range(gap_count):
            gaps.append(struct.unpack_from("<qq", data, offset))
            offset += 16
        held = {}
        for _ in range(held_count):
            seq, duration_ms, size = struct.unpack_from("<qdI", data, offset)
            offset += 20
            held[seq] = (bytes(data[offset:offset + size]), duration_ms)
            offset += size
        if offset != len(data):
            raise ValueError(f"sequencing state has {len(data) - offset} trailing bytes")
        return cls(next_seq, held, last_duration_ms, tuple(map(tuple, gaps)), duplicates, reordered, late, missing)


class Sequencer:
    """The ordering rules for one SequencingConfig; pure, so one instance serves every stream."""

    def __init__(self, config: SequencingConfig | None = None) -> None:
        self.config = config or SequencingConfig()

    def accept(self, state: SequenceState, seq: int, payload: bytes,
               duration_ms: float) -> tuple[list[Release], SequenceState]:
        """Take one chunk; returns what can now be released, in stream order, and the new state.

        Raises BadChunk("negative_seq" | "seq_jump"); the state is then unchanged.
        """
        if seq < 0:
            raise BadChunk("negative_seq", f"seq {seq} is negative")
        if state.next_seq < 0:  # the stream's first chunk
            start = seq if self.config.first_seq is None else self.config.first_seq
            state = replace(state, next_seq=start)
        if seq < state.next_seq:
            if any(first <= seq <= last for first, last in state.gaps):
                return [], replace(state, late=state.late + 1)
            return [], replace(state, duplicates=state.duplicates + 1)
        if seq in state.held:
            return [], replace(state, duplicates=state.duplicates + 1)
        if seq - state.next_seq > self.config.max_seq_jump:
            raise BadChunk("seq_jump", f"seq {seq} is {seq - state.next_seq} chunks ahead of the expected "
                                       f"{state.next_seq} (more than {self.config.max_seq_jump})")

        held = dict(state.held)
        held[seq] = (payload, duration_ms)
        state = replace(state, held=held, last_duration_ms=duration_ms,
                        reordered=state.reordered + (seq != state.next_seq))
        releases: list[Release] = []
        new_base = seq - self.config.window + 1
        if new_base > state.next_seq:  # the window overflowed: give up on what falls out of it
            state = self._advance(state, new_base, releases)
        return releases, self._release_consecutive(state, releases)

    def flush(self, state: SequenceState) -> tuple[list[Release], SequenceState]:
        """Release everything held (end of stream or idle), filling the gaps before held chunks."""
        if not state.held:
            return [], state
        releases: list[Release] = []
        state = self._advance(state, max(state.held) + 1, releases)
        return releases, state

    def expected_ms(self, state: SequenceState) -> float:
        """The duration a missing chunk is assumed to have."""
        return self.config.chunk_ms if self.config.chunk_ms is not None else state.last_duration_ms

    def _advance(self, state: SequenceState, new_base: int, releases: list[Release]) -> SequenceState:
        """Move next_seq to new_base: release held chunks below it in order, gaps between them."""
        held = dict(state.held)
        cursor = state.next_seq
        gaps = list(state.gaps)
        missing = state.missing
        for seq in sorted(s for s in held if s < new_base):
            if seq > cursor:
                releases.append(Gap(cursor, seq - cursor, (seq - cursor) * self.expected_ms(state)))
                gaps.append((cursor, seq - 1))
                missing += seq - cursor
            payload, duration_ms = held.pop(seq)
            releases.append(Ready(seq, payload, duration_ms))
            cursor = seq + 1
        if new_base > cursor:
            releases.append(Gap(cursor, new_base - cursor, (new_base - cursor) * self.expected_ms(state)))
            gaps.append((cursor, new_base - 1))
            missing += new_base - cursor
        return replace(state, next_seq=new_base, held=held, gaps=tuple(gaps[-REMEMBERED_GAPS:]), missing=missing)

    @staticmethod
    def _release_consecutive(state: SequenceState, releases: list[Release]) -> SequenceState:
        held = state.held
        next_seq = state.next_seq
        if next_seq not in held:
            return state
        held = dict(held)
        while next_seq in held:
            payload, duration_ms = held.pop(next_seq)
            releases.append(Ready(next_seq, payload, duration_ms))
            next_seq += 1
        return replace(state, next_seq=next_seq, held=held)
