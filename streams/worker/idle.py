"""The idle timer's choice: which streams to flush (their producer went quiet) or evict (idle past
their TTL, or over the stream cap, so memory stays bounded). Pure: the worker's timer
(streams/worker/app.py) sends each request to the stream's own partition, where the agent
re-checks it against the stream's real state (streams/core/pipeline.py: flush_idle, evict).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class IdleRequest:
    key: str  # the stream's state key
    call_id: str
    stream_id: str
    partition: int
    action: str  # "flush" or "evict"


def idle_requests(streams: Mapping[str, dict], now_ms: int, assigned: set[int], caught_up: Callable[[int], bool],
                  idle_flush_s: float, stream_ttl_s: float, max_streams: int,
                  checkpoint_waiting: Callable[[str], bool] = lambda key: False,
                  checkpoint_interval_s: float = 5.0) -> Iterator[IdleRequest | str]:
    """For each stream view (WorkerStatus.streams), the request to send, or its key alone when the
    stream moved to another worker in a rebalance (the caller forgets it). A flush request also
    checkpoints its stream (streams/core/checkpoints.py): one quiet for `checkpoint_interval_s`
    with changes waiting (`checkpoint_waiting(key)`) gets one, or no batch would write them."""
    # Over the cap, the longest-idle streams go first.
    by_idleness = sorted(streams.items(), key=lambda item: item[1]["last_chunk_ms"])
    over_cap = {key for key, _ in by_idleness[:max(len(by_idleness) - max_streams, 0)]}
    for key, view in by_idleness:
        partition = view["partition"]
        if partition not in assigned:
            yield key
            continue
        idle_ms = now_ms - view["last_chunk_ms"]
        if key in over_cap or idle_ms >= stream_ttl_s * 1000:
            action = "evict"
        elif idle_ms >= idle_flush_s * 1000 and view["utterance_open"] and caught_up(partition):
            # Quiet only counts once the partition is read to its end: a worker that is behind
            # has the stream's next chunks waiting, and must not cut the utterance early.
            action = "flush"
        elif idle_ms >= checkpoint_interval_s * 1000 and checkpoint_waiting(key):
            action = "flush"  # (the agent re-checks whether its utterance may be cut)
        else:
            continue
        yield IdleRequest(key, view["call_id"], view["stream_id"], partition, action)
