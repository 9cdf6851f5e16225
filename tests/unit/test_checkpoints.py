"""The checkpoint layer (streams/core/checkpoints.py): a stream's table changes wait in the
worker, reads see them, and only a checkpoint writes them, with the records they held back."""

from __future__ import annotations

from callstt.streams.core.checkpoints import Checkpoints, stream_of


class Record:
    def __init__(self, partition: int, offset: int) -> None:
        self.partition, self.offset = partition, offset

    def __repr__(self) -> str:
        return f"Record({self.partition}, {self.offset})"


def layer(table: dict, interval_ms: int = 5000) -> Checkpoints:
    return Checkpoints(table.get, partition_of=lambda record: record.partition, interval_ms=interval_ms)


def test_keys_belong_to_their_stream_and_settings_to_themselves():
    assert stream_of("S|call|caller") == "S|call|caller"
    assert stream_of("A|call|caller|12") == "S|call|caller"
    assert stream_of("A|a|b|c|caller|3") == "S|a|b|c|caller"  # a call ID with bars in it
    assert stream_of("C|call") == "C|call"


def test_changes_wait_for_the_checkpoint_and_reads_see_them_meanwhile():
    table = {"S|c|caller": b"state 0"}
    checkpoints = layer(table)
    first, second = Record(0, 10), Record(0, 11)
    checkpoints.add([("S|c|caller", b"state 1", first), ("A|c|caller|0", b"block 0", first)],
                    {"S|c|caller": [first]}, now_ms=1000)
    checkpoints.add([("S|c|caller", b"state 2", second)], {"S|c|caller": [second]}, now_ms=1050)
    assert checkpoints.read("S|c|caller") == b"state 2" and checkpoints.read("A|c|caller|0") == b"block 0"
    assert table == {"S|c|caller": b"state 0"}  # nothing written yet
    assert checkpoints.held == 2 and checkpoints.waiting("S|c|caller")
    assert checkpoints.due(now_ms=5999) == []
    assert checkpoints.due(now_ms=6000) == ["S|c|caller"]  # its oldest change is 5 s old
    assert checkpoints.due(now_ms=1100, asked={"S|c|caller", "S|other|caller"}) == ["S|c|caller"]

    writes, records = checkpoints.take(["S|c|caller"])
    assert writes == [("A|c|caller|0", b"block 0", first), ("S|c|caller", b"state 2", second)]  # latest only
    assert records == [first, second]
    assert checkpoints.held == 0 and not checkpoints.waiting("S|c|caller") and checkpoints.streams() == []
    table.update({key: value for key, value, _ in writes})
    assert checkpoints.read("S|c|caller") == b"state 2"  # from the table now


def test_a_block_written_and_deleted_between_checkpoints_never_reaches_the_table():
    table = {"A|c|caller|0": b"old block"}
    checkpoints = layer(table)
    record = Record(1, 5)
    checkpoints.add([("A|c|caller|1", b"new block", record)], {"S|c|caller": [record]}, now_ms=0)
    checkpoints.add([("A|c|caller|1", None, record), ("A|c|caller|0", None, record),
                     ("A|c|caller|9", None, record)], {}, now_ms=10)
    assert checkpoints.read("A|c|caller|1") is None and checkpoints.read("A|c|caller|0") is None
    writes, records = checkpoints.take(checkpoints.streams())
    # The block the table has is deleted; neither the one it never had nor one never written gets a tombstone.
    assert writes == [("A|c|caller|0", None, record)] and records == [record]


def test_streams_are_checkpointed_on_their_own_and_records_without_changes_are_released_with_them():
    checkpoints = layer({})
    a, b, duplicate = Record(0, 1), Record(0, 2), Record(0, 3)
    checkpoints.add([("S|a|caller", b"a", a), ("S|b|caller", b"b", b)],
                    {"S|a|caller": [a, duplicate], "S|b|caller": [b]}, now_ms=0)
    writes, records = checkpoints.take(["S|a|caller"])
    assert [key for key, _, _ in writes] == ["S|a|caller"] and records == [a, duplicate]
    assert checkpoints.read("S|b|caller") == b"b" and checkpoints.held == 1


def test_a_revoked_partition_s_waiting_changes_and_records_are_dropped_never_released():
    table = {"S|a|caller": b"a in the table"}
    checkpoints = layer(table)
    on_0, on_1 = Record(0, 1), Record(1, 1)
    checkpoints.add([("S|a|caller", b"a waiting", on_0), ("S|b|caller", b"b", on_1)],
                    {"S|a|caller": [on_0], "S|b|caller": [on_1]}, now_ms=0)
    assert checkpoints.drop({0}) == 1
    assert checkpoints.read("S|a|caller") == b"a in the table"  # its next owner starts from the changelog
    writes, records = checkpoints.take(checkpoints.streams())
    assert [key for key, _, _ in writes] == ["S|b|caller"] and records == [on_1]
