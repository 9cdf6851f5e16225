"""Chunk ordering per stream: duplicates, reordering, gaps filled with silence, late chunks, bad seqs."""

from __future__ import annotations

import pytest

from callstt.models.audio.errors import BadChunk
from callstt.models.audio.sequencing import Gap, Ready, Sequencer, SequenceState, SequencingConfig


def run(sequencer: Sequencer, seqs, state: SequenceState | None = None, duration_ms: float = 20.0):
    """Accept chunks (payload = the seq as text); returns everything released and the state."""
    state = state or SequenceState()
    released = []
    for seq in seqs:
        out, state = sequencer.accept(state, seq, str(seq).encode(), duration_ms)
        released += out
    return released, state


def seqs_of(released) -> list:
    return [r.seq if isinstance(r, Ready) else ("gap", r.first_seq, r.count) for r in released]


def test_in_order_chunks_pass_straight_through():
    released, state = run(Sequencer(), range(5))
    assert released == [Ready(seq, str(seq).encode(), 20.0) for seq in range(5)]
    assert state.next_seq == 5 and state.held == {}


def test_duplicates_are_ignored():
    released, state = run(Sequencer(), [0, 1, 1, 0, 3, 3, 2, 2])
    assert seqs_of(released) == [0, 1, 2, 3]
    assert state.duplicates == 4  # 1, 0 after release; 3 while held; 2 after release


def test_reordered_chunks_are_held_and_released_in_order():
    sequencer = Sequencer()
    released, state = run(sequencer, [0, 2, 3, 1])
    assert seqs_of(released) == [0, 1, 2, 3]
    assert state.reordered == 2 and state.held == {} and state.missing == 0
    _, state = run(sequencer, [5], state)
    assert set(state.held) == {5}  # only reordered chunks keep their payload


def test_window_overflow_fills_the_missing_chunk_with_silence():
    sequencer = Sequencer(SequencingConfig(window=8))
    released, state = run(sequencer, [0, 2, 3, 4, 5, 6, 7, 8])
    assert seqs_of(released) == [0]  # 1 may still come: 2..8 are within the window of 8
    out, state = sequencer.accept(state, 9, b"9", 30.0)
    assert out == [Gap(1, 1, 30.0)] + [Ready(seq, str(seq).encode() if seq < 9 else b"9", 20.0 if seq < 9 else 30.0)
                                       for seq in range(2, 10)]
    assert state.missing == 1 and state.next_seq == 10


def test_a_jump_ahead_fills_every_missing_chunk_at_once():
    sequencer = Sequencer(SequencingConfig(window=4, chunk_ms=20.0))
    released, state = run(sequencer, [0, 1, 50], duration_ms=40.0)  # chunk_ms wins over the chunks' own
    assert seqs_of(released) == [0, 1, ("gap", 2, 45)]  # 47..49 stay in the window of 4
    assert released[-1].silence_ms == 45 * 20.0
    assert set(state.held) == {50} and state.next_seq == 47
    released, state = run(sequencer, [47, 48, 49], state)
    assert seqs_of(released) == [47, 48, 49, 50]


def test_gaps_between_held_chunks_when_the_window_moves():
    sequencer = Sequencer(SequencingConfig(window=4))
    released, state = run(sequencer, [0, 2, 4, 9])
    assert seqs_of(released) == [0, ("gap", 1, 1), 2, ("gap", 3, 1), 4, ("gap", 5, 1)]
    assert state.next_seq == 6 and set(state.held) == {9} and state.missing == 3


def test_a_chunk_after_its_gap_was_filled_is_dropped_as_late():
    sequencer = Sequencer(SequencingConfig(window=2))
    released, state = run(sequencer, [0, 2, 3])  # 1 given up when 3 arrives
    assert seqs_of(released) == [0, ("gap", 1, 1), 2, 3]
    out, state = sequencer.accept(state, 1, b"1", 20.0)
    assert out == [] and state.late == 1 and state.duplicates == 0
    out, state = sequencer.accept(state, 2, b"2", 20.0)
    assert out == [] and state.late == 1 and state.duplicates == 1


def test_negative_seq_is_a_bad_chunk():
    with pytest.raises(BadChunk) as caught:
        Sequencer().accept(SequenceState(), -1, b"x", 20.0)
    assert caught.value.reason == "negative_seq"


def test_an_absurd_jump_is_a_bad_chunk_not_silence():
    sequencer = Sequencer(SequencingConfig(max_seq_jump=100000))
    _, state = run(sequencer, [0, 1])
    with pytest.raises(BadChunk) as caught:
        sequencer.accept(state, 2 + 100001, b"x", 20.0)
    assert caught.value.reason == "seq_jump"
    out, _ = sequencer.accept(state, 2 + 100000, b"x", 20.0)  # exactly the limit is still a gap
    assert out[0] == Gap(2, 100000 - 7, (100000 - 7) * 20.0)


def test_streams_start_at_seq_zero_unless_configured_otherwise():
    released, _ = run(Sequencer(SequencingConfig(window=1)), [1, 2])
    assert seqs_of(released) == [("gap", 0, 1), 1, 2]
    released, state = run(Sequencer(SequencingConfig(first_seq=None)), [700, 701])
    assert seqs_of(released) == [700, 701] and state.missing == 0


def test_flush_releases_what_is_held_and_fills_the_gaps_before_it():
    sequencer = Sequencer()
    _, state = run(sequencer, [0, 3, 5])
    released, state = sequencer.flush(state)
    assert seqs_of(released) == [("gap", 1, 2), 3, ("gap", 4, 1), 5]
    assert state.held == {} and state.next_seq == 6
    assert sequencer.flush(state) == ([], state)


def test_state_round_trips_through_bytes():
    sequencer = Sequencer(SequencingConfig(window=3))
    _, state = run(sequencer, [0, 0, 2, 5, 1, 7])
    assert state.held and state.gaps and state.duplicates and state.late
    restored = SequenceState.from_bytes(state.to_bytes())
    assert restored == state
    assert sequencer.accept(restored, 6, b"6", 20.0) == sequencer.accept(state, 6, b"6", 20.0)
    assert SequenceState.from_bytes(SequenceState().to_bytes()) == SequenceState()
    with pytest.raises(ValueError):
        SequenceState.from_bytes(state.to_bytes() + b"\x00")


def test_bad_seq_leaves_the_state_unchanged():
    sequencer = Sequencer()
    _, state = run(sequencer, [0, 2])
    for seq in (-5, 10**9):
        with pytest.raises(BadChunk):
            sequencer.accept(state, seq, b"x", 20.0)
    released, _ = run(sequencer, [1], state)
    assert seqs_of(released) == [1, 2]
