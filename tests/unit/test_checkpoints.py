"""The checkpoint layer (streams/core/checkpoints.py): a stream's state changes wait in the
worker, reads see them, and only a checkpoint writes them, with the records they held back; audio
blocks stay in the worker, never in the table, and hold their chunks' records meanwhile."""

from __future__ import annotations

from callstt.streams.core.checkpoints import Checkpoints, stream_of


class Record:
    def __init__(self, partition: int, offset: int) -> None:
        self.partition, self.offset = partition, offset

    def __repr__(self) -> str:
        return f"Record({self.partition}, {self.offset})"


def layer(table: dict, interval_ms: int = 5000, needed: dict | None = None) -> Checkpoints:
    """`needed`: state value -> the seqs its kept blocks need (none by default)."""
    return Checkpoints(table.get, partition_of=lambda record: record.partition, interval_ms=interval_ms,
                       needed=lambda state: (needed or {}).get(state, range(0)))


def test_keys_belong_to_their_stream_and_settings_to_themselves():
    assert stream_of("S|call|caller") == "S|call|caller"
    assert stream_of("A|call|caller|12") == "S|call|caller"
    assert stream_of("R|call|caller|12") == "S|call|caller"
    assert stream_of("A|a|b|c|caller|3") == "S|a|b|c|caller"  # a call ID with bars in it
    assert stream_of("C|call") == "C|call"


def test_changes_wait_for_the_checkpoint_and_reads_see_them_meanwhile():
    table = {"S|c|caller": b"state 0"}
    checkpoints = layer(table)
    first, second = Record(0, 10), Record(0, 11)
    checkpoints.add([("S|c|caller", b"state 1", first), ("C|c", b"settings", first)],
                    {"S|c|caller": [(first, 0)]}, now_ms=1000)
    checkpoints.add([("S|c|caller", b"state 2", second)], {"S|c|caller": [(second, 1)]}, now_ms=1050)
    assert checkpoints.read("S|c|caller") == b"state 2" and checkpoints.read("C|c") == b"settings"
    assert table == {"S|c|caller": b"state 0"}  # nothing written yet
    assert checkpoints.held == 2 and checkpoints.waiting("S|c|caller")
    assert checkpoints.due(now_ms=5999) == []
    assert checkpoints.due(now_ms=6000) == ["S|c|caller", "C|c"]  # their oldest change is 5 s old
    assert checkpoints.due(now_ms=1100, asked={"S|c|caller", "S|other|caller"}) == ["S|c|caller"]

    writes, records = checkpoints.take(["S|c|caller"], now_ms=1100)
    assert writes == [("S|c|caller", b"state 2", second)]  # the latest only
    assert records == [first, second]
    assert checkpoints.held == 0 and not checkpoints.waiting("S|c|caller") and checkpoints.streams() == ["C|c"]
    table.update({key: value for key, value, _ in writes})
    assert checkpoints.read("S|c|caller") == b"state 2"  # from the table now


def test_audio_blocks_stay_in_the_worker_and_hold_their_chunks_records_past_the_checkpoint():
    table = {"A|c|caller|0": b"a block of the version before"}
    checkpoints = layer(table, needed={b"state 2": range(2, 4), b"state 3": range(3, 5)})
    records = [Record(0, offset) for offset in range(5)]
    checkpoints.add([("A|c|caller|1", b"pcm 1", records[1]), ("R|c|caller|1", b"resampler 1", records[1]),
                     ("A|c|caller|0", None, records[1]), ("A|c|caller|9", None, records[1]),
                     ("S|c|caller", b"state 2", records[3])],
                    {"S|c|caller": [(record, seq) for seq, record in enumerate(records[:4])]}, now_ms=0)
    assert checkpoints.read("A|c|caller|1") == b"pcm 1" and checkpoints.read("A|c|caller|0") is None
    writes, released = checkpoints.take(checkpoints.streams(), now_ms=100)
    # The table gets the state and the old block's tombstone, never a block of this version; a
    # block it never had gets no tombstone.
    assert [(key, value) for key, value, _ in writes] == [("A|c|caller|0", None), ("S|c|caller", b"state 2")]
    assert released == records[:2]  # chunks 2 and 3 are behind kept blocks: still held
    assert checkpoints.held == 2 and checkpoints.read("A|c|caller|1") == b"pcm 1"
    assert checkpoints.due(now_ms=5099) == [] and checkpoints.due(now_ms=5100) == ["S|c|caller"]

    # The endpointer let go of block 1; chunk 4 came. At the next checkpoint chunk 2 is released.
    checkpoints.add([("A|c|caller|1", None, records[4]), ("R|c|caller|1", None, records[4]),
                     ("S|c|caller", b"state 3", records[4])], {"S|c|caller": [(records[4], 4)]}, now_ms=200)
    writes, released = checkpoints.take(["S|c|caller"], now_ms=300)
    assert [key for key, _, _ in writes] == ["S|c|caller"] and released == [records[2]]
    assert checkpoints.read("A|c|caller|1") is None and checkpoints.held == 2


def test_while_faust_waits_the_records_held_for_their_audio_are_given_up():
    checkpoints = layer({}, needed={b"open": range(0, 2)})
    a, b = Record(0, 1), Record(0, 2)
    checkpoints.add([("S|c|caller", b"open", b)], {"S|c|caller": [(a, 0), (b, 1)]}, now_ms=0)
    writes, released = checkpoints.take(checkpoints.streams(), now_ms=10)
    assert len(writes) == 1 and released == [] and checkpoints.held == 2
    assert checkpoints.give_up_needed() == [a, b]
    assert checkpoints.held == 0 and checkpoints.streams() == []


def test_streams_are_checkpointed_on_their_own_and_records_without_changes_are_released_with_them():
    checkpoints = layer({})
    a, b, duplicate = Record(0, 1), Record(0, 2), Record(0, 3)
    checkpoints.add([("S|a|caller", b"a", a), ("S|b|caller", b"b", b)],
                    {"S|a|caller": [(a, 0), (duplicate, 0)], "S|b|caller": [(b, 0)]}, now_ms=0)
    writes, records = checkpoints.take(["S|a|caller"], now_ms=0)
    assert [key for key, _, _ in writes] == ["S|a|caller"] and records == [a, duplicate]
    assert checkpoints.read("S|b|caller") == b"b" and checkpoints.held == 1


def test_a_revoked_partition_s_waiting_changes_kept_audio_and_records_are_dropped_never_released():
    table = {"S|a|caller": b"a in the table"}
    checkpoints = layer(table)
    on_0, on_1 = Record(0, 1), Record(1, 1)
    checkpoints.add([("S|a|caller", b"a waiting", on_0), ("A|a|caller|0", b"pcm", on_0), ("S|b|caller", b"b", on_1)],
                    {"S|a|caller": [(on_0, 0)], "S|b|caller": [(on_1, 0)]}, now_ms=0)
    assert checkpoints.drop({0}) == 1
    assert checkpoints.read("S|a|caller") == b"a in the table"  # its next owner starts from the changelog
    assert checkpoints.read("A|a|caller|0") is None  # and reads the chunk again
    writes, records = checkpoints.take(checkpoints.streams(), now_ms=0)
    assert [key for key, _, _ in writes] == ["S|b|caller"] and records == [on_1]


def test_what_a_stream_still_needs_comes_from_the_state_it_wrote_not_from_a_table_read():
    """Outside a record's handling a read of the (partitioned) table may look in another
    partition and find nothing; the records a stream's kept audio needs stay held regardless."""
    nothing = {}  # every read misses, as a read bound to another partition's record does
    checkpoints = layer(nothing, needed={b"open": range(0, 3)})
    first, second, third = Record(0, 1), Record(0, 2), Record(0, 3)
    checkpoints.add([("S|c|caller", b"open", first)], {"S|c|caller": [(first, 0), (second, 1)]}, now_ms=0)
    assert checkpoints.take(["S|c|caller"], now_ms=0)[1] == []
    checkpoints.add([], {"S|c|caller": [(third, 2)]}, now_ms=10)  # a chunk that changed no state here
    writes, released = checkpoints.take(["S|c|caller"], now_ms=20)
    assert writes == [] and released == [] and checkpoints.held == 3
