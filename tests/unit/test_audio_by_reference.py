"""Audio by reference (streams/core/assembly.py): a stream's kept audio blocks stay in the worker,
and a worker that takes the stream over with only its state record rebuilds them, bit for bit,
from its chunks read again; the state record stays small however long the open utterance is."""

from __future__ import annotations

import pytest

from callstt.models.voices.synth import ENGLISH_SENTENCES, conversation
from callstt.streams.client.producer import ChunkPlan, iter_chunks
from callstt.streams.core.assembly import (GAP, Block, StreamAssembler, StreamState, block_runs, blocks_of,
                                           state_key)


@pytest.fixture(scope="module")
def call_chunks():
    """One 8 kHz mu-law stream of three sentences (the resampler has a state to carry)."""
    audio = conversation(ENGLISH_SENTENCES[:3], sample_rate=8000, silence_s=1.0)
    return list(iter_chunks(audio, "call", "caller", ChunkPlan(8000, "MULAW", 20), start_ms=0))


def feed(assembler, chunks, state, store, utterances):
    """Run chunks through the stream as the worker does (`store`: its table and kept blocks)."""
    for chunk in chunks:
        outcome = assembler.accept(state, chunk, 1000, store.get)
        for key in outcome.deletes:
            store.pop(key, None)
        store.update(outcome.writes)
        utterances += [(u.index, u.start_ms, u.end_ms, u.audio.tobytes()) for u in outcome.utterances]
        state = outcome.state
    return state


def test_a_successor_with_only_the_state_record_rebuilds_the_open_utterance_bit_for_bit(call_chunks):
    assembler = StreamAssembler()
    whole: list = []
    feed(assembler, call_chunks, assembler.new_state("call", "caller"), {}, whole)
    assert len(whole) == 3

    # The first worker takes the call to the middle of its second sentence, then is gone.
    cut_at = len(call_chunks) // 2
    before: list = []
    state = feed(assembler, call_chunks[:cut_at], assembler.new_state("call", "caller"), {}, before)
    assert len(before) == 1 and any(block.seq >= 0 for block in state.blocks)
    record = state.to_bytes()
    needed = StreamState.from_bytes(record).needed_seqs
    assert needed.start > 0 and needed.stop == cut_at  # the open utterance's chunks, not the first sentence's

    # Its successor has the state record only; it reads again from the first chunk still needed.
    successor = StreamState.from_bytes(record)
    store = {state_key("call", "caller"): record}
    after: list = []
    feed(assembler, call_chunks[needed.start:], successor, store, after)
    assert before + after == whole  # the same cuts and the same audio, sample for sample


def test_the_state_record_stays_small_while_an_utterance_grows(call_chunks):
    assembler = StreamAssembler()
    state, store, sizes = assembler.new_state("call", "caller"), {}, []
    for chunk in call_chunks:
        state = feed(assembler, [chunk], state, store, [])
        sizes.append((len(state.blocks), len(state.to_bytes())))
    most_blocks, size_then = max(sizes)
    assert most_blocks > 100  # an utterance of seconds: blocks of 20 ms
    assert size_then < 4500  # runs, not a record per block (the VAD's own state is most of it)


def test_blocks_go_as_runs_and_come_back_the_same():
    blocks = [Block(7, 0, 320, 1000, 40), Block(8, 320, 320, 1020, 41), Block(9, 640, 320, 1040, 42),
              Block(10, 960, 3200, 1040, GAP), Block(11, 4160, 320, 1240, 48), Block(12, 4480, 160, 1260, 49)]
    runs = block_runs(blocks)
    assert len(runs) == 4 and blocks_of(runs) == blocks


def test_a_state_record_of_the_version_before_reads_with_its_blocks_in_the_table():
    old = (b'{"call_id":"c","stream_id":"s","sequence":"","resampler":"","vad":"","endpoint":"",'
           b'"position":640,"blocks":[{"number":0,"start_sample":0,"samples":320,"capture_ts_ms":5},'
           b'{"number":1,"start_sample":320,"samples":320,"capture_ts_ms":25}],"next_block":2}')
    state = StreamState.from_bytes(old)
    assert [(block.number, block.seq) for block in state.blocks] == [(0, -1), (1, -1)]
    assert state.needed_seqs == range(0)  # their audio is in the table: no record is held for it


def test_an_idle_flush_lets_go_of_a_quiet_stream_s_audio_and_so_of_its_records(call_chunks):
    assembler = StreamAssembler()
    store: dict = {}
    state = feed(assembler, call_chunks[:-1], assembler.new_state("call", "caller"), store, [])
    assert state.blocks and len(state.needed_seqs) > 0  # the pad before a next utterance
    outcome = assembler.flush_idle(state, 10_000, store.get)
    assert outcome.state.blocks == [] and outcome.state.needed_seqs == range(0)
    assert all(key.startswith(("A|", "R|")) for key in outcome.deletes) and outcome.deletes
