"""The audio partitions assigned to a worker, and how far behind each one it is: the records not
yet fetched (for the idle flush, which must not cut an utterance while the stream's next chunks
still wait unread) and the records not yet done (the backlog: for the consumer-lag gauges and
/health's overload report)."""

from __future__ import annotations

from typing import Any

from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from callstt.streams.worker.faust_compat import read_offset


class AudioPartitions:
    """The audio partitions assigned to this worker, and how far behind each one it reads."""

    def __init__(self, app: Any, topic: str) -> None:  # a faust.App
        self.app, self.topic = app, topic
        # The last audio offset whose batch is done (transcripts published, state acknowledged),
        # per partition, for the backlog.
        self.done: dict[int, int] = {}

    def mark_done(self, partition: int, offset: int) -> None:
        self.done[partition] = max(self.done.get(partition, -1), offset)

    def assigned(self) -> set[int]:
        """None yet while the consumer is still starting (/health asks from its first moment)."""
        try:
            assignment = self.app.consumer.assignment()
        except ConsumerNotStarted:
            return set()
        return {tp.partition for tp in assignment if tp.topic == self.topic}

    def lag(self, partition: int, read: int | None = None) -> int | None:
        """Audio records of the partition after offset `read` (default: the last one the consumer
        fetched) that exist (None: unknown so far)."""
        tp = TP(self.topic, partition)
        try:
            highwater = self.app.consumer.highwater(tp)
        except Exception:  # nothing fetched yet
            return None
        if highwater is None:
            return None
        read = read_offset(self.app, tp) if read is None else read
        return max(highwater - ((read if read is not None else -1) + 1), 0)

    def caught_up(self, partition: int) -> bool:
        return self.lag(partition) == 0

    def taken_to_end(self, partition: int, taken: int) -> bool:
        """The agent has taken every audio record of the partition up to its end (`taken`: the last
        offset it accepted, -1 for none). Stricter than `caught_up`: the consumer fetches ahead of
        the agent, and a fetched record may still wait behind the one being handled."""
        return self.lag(partition, taken) == 0

    def backlog(self, partition: int) -> int | None:
        """Audio records of the partition not done yet (None: unknown so far): the consumer fetches
        thousands of records ahead of what the model has got through (aiokafka's fetch buffer,
        Faust's stream buffer, the agent's open batch), so the fetch lag stays near zero on a
        worker minutes behind. Until a batch of the partition is done, the fetch lag."""
        if partition not in self.done:
            return self.lag(partition)
        return self.lag(partition, self.done[partition])

    def total_backlog(self) -> int:
        assigned = self.assigned()
        for partition in set(self.done) - assigned:  # moved away: its next owner counts it
            del self.done[partition]
        return sum(self.backlog(p) or 0 for p in assigned)
