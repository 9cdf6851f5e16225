"""The pipeline core (streams/core/pipeline.py) without Kafka and without the model: records in,
rejections with their dead-letter reasons, utterances, idle flushes and state changes out."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from callstt.models.audio.sequencing import SequenceState
from callstt.models.voices.synth import ENGLISH_SENTENCES, conversation
from callstt.schemas.codec import AvroCodec
from callstt.streams.client.producer import ChunkPlan, iter_chunks
from callstt.streams.core.assembly import StreamState, state_key
from callstt.streams.core.pipeline import MemoryStore, Pipeline, PipelineConfig, Rejected, cut_utterances


@pytest.fixture(scope="module")
def call_chunks():
    audio = conversation(ENGLISH_SENTENCES[:2], sample_rate=8000, silence_s=1.0)
    return list(iter_chunks(audio, "call-1", "caller", ChunkPlan(8000, "MULAW", 20), start_ms=0))


def run_records(pipeline: Pipeline, records: list[bytes], batch_size: int, store: MemoryStore | None = None,
                offsets: list[int] | None = None):
    """Records through the core in batches, as the worker runs them; state kept in a MemoryStore.
    `offsets`: each record's offset in the audio topic (none by default)."""
    store, utterances, rejected = MemoryStore() if store is None else store, [], []
    offsets = offsets or [-1] * len(records)
    for start in range(0, len(records), batch_size):
        batch = pipeline.batch(store.get)
        for record, offset in zip(records[start:start + batch_size], offsets[start:start + batch_size]):
            result = batch.accept_record(record, 1000, owner=None, offset=offset)
            if isinstance(result, Rejected):
                rejected.append(result)
        utterances += [utterance for _, utterance in batch.ready]
        store.apply(batch.changes())
    return store, utterances, rejected


def test_records_in_batches_cut_what_the_chunks_cut_alone(call_chunks):
    pipeline = Pipeline()
    records = [pipeline.codec.encode_chunk(chunk, "audio") for chunk in call_chunks]
    store, utterances, rejected = run_records(pipeline, records, batch_size=37)
    alone = cut_utterances(pipeline, call_chunks)
    assert rejected == [] and len(alone) >= 2
    assert [(u.index, u.start_ms, u.end_ms) for u in utterances] == [(u.index, u.start_ms, u.end_ms) for u in alone]
    for ours, theirs in zip(utterances, alone):
        assert np.array_equal(ours.audio, theirs.audio)
    # The call ended: no audio left behind, only the small record that it ended.
    assert list(store) == [state_key("call-1", "caller")]
    ended = StreamState.from_bytes(store[state_key("call-1", "caller")])
    assert ended.ended and ended.blocks == [] and ended.vad == b"" and len(store[state_key("call-1", "caller")]) < 600


@pytest.mark.parametrize("written_by", ["previous version", "newer version"])
def test_a_stream_goes_on_from_the_state_another_version_wrote(call_chunks, written_by):
    """In a rolling upgrade a partition moves between versions mid-call: a state record without
    a field this version added (the previous version's), or with one it does not know (a newer
    one's), is read and the stream goes on as if one worker had had it all along."""
    import json

    pipeline = Pipeline()
    records = [pipeline.codec.encode_chunk(chunk, "audio") for chunk in call_chunks]
    _, whole, _ = run_records(pipeline, records, 37)
    middle = len(records) // 2
    store, first_half, _ = run_records(pipeline, records[:middle], 37)
    key = state_key("call-1", "caller")
    state = json.loads(store[key])
    if written_by == "previous version":
        del state["first_offset"]
    else:
        state["a_field_of_a_newer_version"] = {"anything": 1}
    store[key] = json.dumps(state).encode()
    _, second_half, rejected = run_records(pipeline, records[middle:], 37, store)
    assert rejected == [] and len(whole) >= 2
    assert [(u.index, u.start_ms, u.end_ms) for u in first_half + second_half] == \
        [(u.index, u.start_ms, u.end_ms) for u in whole]


def test_an_ended_stream_read_again_is_duplicates_unless_read_from_its_first_record(call_chunks):
    """After a rebalance or a crash a worker may read an ended call's last records again (its
    predecessor's commit lost): they are duplicates, not a new stream with a gap. A group rewound to
    before the call (a reprocess) reads its first record again: the stream starts over, same ids."""
    pipeline = Pipeline()
    records = [pipeline.codec.encode_chunk(chunk, "audio") for chunk in call_chunks]
    offsets = list(range(1000, 1000 + len(records)))
    store, first_pass, _ = run_records(pipeline, records, 37, offsets=offsets)
    middle = len(records) // 2

    _, again, rejected = run_records(pipeline, records[middle:], 37, store, offsets[middle:])
    assert again == [] and rejected == []
    assert SequenceState.from_bytes(StreamState.from_bytes(store[state_key("call-1", "caller")]).sequence
                                    ).duplicates == len(records) - middle
    # Sent again (new offsets), even from its start: the same duplicates.
    _, again, rejected = run_records(pipeline, records, 37, store, [offset + 5000 for offset in offsets])
    assert again == [] and rejected == []
    # A chunk after the end is bad input.
    late = pipeline.codec.encode_chunk(replace(call_chunks[-1], seq=call_chunks[-1].seq + 1, end_of_stream=False),
                                       "audio")
    _, _, rejected = run_records(pipeline, [late], 1, store)
    assert [r.reason for r in rejected] == ["after_end_of_stream"]

    _, rewound, rejected = run_records(pipeline, records, 37, store, offsets)
    assert rejected == [] and [(u.index, u.start_ms, u.end_ms) for u in rewound] == \
        [(u.index, u.start_ms, u.end_ms) for u in first_pass]


def test_an_ended_stream_is_forgotten_when_evicted(call_chunks):
    pipeline = Pipeline()
    records = [pipeline.codec.encode_chunk(chunk, "audio") for chunk in call_chunks]
    store, _, _ = run_records(pipeline, records, 50)
    batch = pipeline.batch(store.get)
    outcome = batch.evict("call-1", "caller", 10**13, owner=None)
    assert outcome.forgotten and outcome.utterances == []
    store.apply(batch.changes())
    assert store == {}


def test_bad_records_are_rejected_with_their_reason_and_the_rest_goes_on(call_chunks):
    pipeline = Pipeline()
    codec = AvroCodec()
    good = [codec.encode_chunk(chunk, "audio") for chunk in call_chunks]
    negative = codec.encode_chunk(replace(call_chunks[0], call_id="call-2", seq=-1), "audio")
    _, utterances, rejected = run_records(pipeline, [b"\x00garbage", negative] + good, batch_size=50)
    assert [r.reason for r in rejected][1] == "negative_seq"
    assert rejected[0].reason and "call-2" in rejected[1].detail
    assert len(utterances) >= 2  # the good call is unaffected


def test_an_idle_flush_waits_for_quiet_and_a_caught_up_partition(call_chunks):
    pipeline = Pipeline(PipelineConfig(idle_flush_ms=5000))
    store = MemoryStore()
    speaking = [chunk for chunk in call_chunks if not chunk.end_of_stream][:100]  # 2 s: mid-sentence
    batch = pipeline.batch(store.get)
    for chunk in speaking:
        batch.accept_chunk(chunk, 1000, owner=None)
    store.apply(batch.changes())

    batch = pipeline.batch(store.get)
    assert batch.flush_idle("call-1", "caller", 3000, caught_up=True, owner=None) is None  # quiet 2 s only
    assert batch.flush_idle("call-1", "caller", 9000, caught_up=False, owner=None) is None  # still reading
    assert batch.flush_idle("nobody", "caller", 9000, caught_up=True, owner=None) is None
    outcome = batch.flush_idle("call-1", "caller", 9000, caught_up=True, owner=None)
    assert [u.reason for u in outcome.utterances] == ["idle"]
    assert batch.ready[0][1].index == 0


def test_a_batch_taken_while_the_model_ran_follows_the_language_the_model_left(call_chunks):
    """The next batch reads through the running one; once that one is done (its changes stored),
    `follow` points it at the store and gives its streams the language evidence the model left."""
    pipeline, store = Pipeline(), MemoryStore()
    half = len(call_chunks) // 2
    running = pipeline.batch(store.get)
    for chunk in call_chunks[:half]:
        running.accept_chunk(chunk, 1000, owner=None)
    following = pipeline.batch(running.read_latest)
    for chunk in call_chunks[half:-1]:  # all but the end-of-stream chunk: the stream stays
        following.accept_chunk(chunk, 1000, owner=None)
    assert following.ready  # the rest of the call finishes an utterance in the following batch
    assert following.state("call-1", "caller").position > running.state("call-1", "caller").position
    evidence = {"committed": "en", "probability": 0.97, "pool": [["en", 2.9]], "seconds": 3.0, "weak": 0,
                "leading": ""}
    running.table.latest_state("call-1", "caller").language = evidence  # what the model step does
    store.apply(running.changes())
    following.follow(running, store.get)
    assert following.state("call-1", "caller").evidence.committed == "en"
    assert all(state.evidence.committed == "en" for state, _ in following.ready)
    store.apply(following.changes())
    assert StreamState.from_bytes(store["S|call-1|caller"]).evidence.committed == "en"


def test_interims_give_way_to_a_speculative_cut_waiting_as_to_a_final(call_chunks):
    """A speculative cut in the open batch means a speaker has stopped: its model call comes
    before any interim call, which would otherwise hold it (and make the speculation useless)."""
    from callstt.models.audio.endpointing import EndpointConfig
    from callstt.streams.core.assembly import AssemblyConfig

    pipeline = Pipeline(PipelineConfig(assembly=AssemblyConfig(endpoint=EndpointConfig(speculate_ms=300,
                                                                                       interim_ms=600))))
    store, with_interim, with_speculation = MemoryStore(), None, None
    for chunk in call_chunks:  # one chunk per batch, as a worker that keeps up takes them
        batch = pipeline.batch(store.get)
        batch.accept_chunk(chunk, chunk.capture_ts_ms, owner=None)
        store.apply(batch.changes())
        if batch.interims and with_interim is None:
            with_interim = batch
        elif with_interim is not None and batch.speculative:
            with_speculation = batch
            break
    assert with_interim and with_speculation, "precondition: the call makes an interim cut, then a speculative one"
    now = with_interim.interims[0][1].last_capture_ts_ms + 100  # the interim is fresh
    pipeline.deferred_interims = []
    run, _ = pipeline.interims_to_run(with_interim, with_speculation, now)
    assert run == [] and len(pipeline.deferred_interims) == 1  # deferred, not run
    pipeline.deferred_interims = []
    run, _ = pipeline.interims_to_run(with_interim, None, now)  # nothing waiting: it runs
    assert len(run) == 1
