"""AudioPartitions: the fetch lag (for the idle flush) and the backlog (for the lag gauges and
/health), on a stand-in for Faust's consumer (its highwater and read offsets)."""

from __future__ import annotations

from types import SimpleNamespace

from faust.types import TP

from callstt.streams.worker.partitions import AudioPartitions


def partitions_with(assigned: dict[int, tuple[int, int]]) -> AudioPartitions:
    """partition -> (highwater, last fetched offset) on the audio topic."""
    consumer = SimpleNamespace(
        assignment=lambda: {TP("audio", p) for p in assigned},
        highwater=lambda tp: assigned[tp.partition][0],
        _read_offset={TP("audio", p): fetched for p, (_, fetched) in assigned.items()})
    return AudioPartitions(SimpleNamespace(consumer=consumer), "audio")


def test_the_backlog_counts_what_is_not_done_while_the_fetch_lag_counts_what_is_not_fetched():
    # 10,000 records in partition 0, all fetched; the model has got through the first 1,500.
    partitions = partitions_with({0: (10_000, 9_999), 1: (500, 399)})
    assert partitions.lag(0) == 0 and partitions.caught_up(0)
    assert partitions.backlog(0) == 0  # no batch done yet: the fetch lag is all it knows
    partitions.mark_done(0, 1_499)
    partitions.mark_done(0, 999)  # an older batch's offsets never move it back
    assert partitions.backlog(0) == 8_500 and partitions.lag(0) == 0
    assert partitions.total_backlog() == 8_500 + 100


def test_a_partition_moved_away_is_no_longer_counted_nor_remembered():
    partitions = partitions_with({0: (100, 99)})
    partitions.mark_done(0, 10)
    partitions.mark_done(3, 50)  # done before partition 3 moved to another worker
    assert partitions.total_backlog() == 89
    assert partitions.done == {0: 10}
