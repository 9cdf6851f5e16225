"""The idle timer's choices (streams/worker/idle.py) over the worker's view of its streams
(streams/worker/web.py WorkerStatus): open ones flushed when quiet, idle ones evicted past their
TTL or over the cap, ended ones kept out of sight and forgotten once their TTL is over."""

from __future__ import annotations

from dataclasses import replace

from callstt.streams.core.assembly import StreamAssembler, state_key
from callstt.streams.settings import Settings
from callstt.streams.worker.idle import IdleRequest, idle_requests
from callstt.streams.worker.web import WorkerStatus


def requests(streams, now_ms, assigned=frozenset({0}), caught_up=True, ttl_s=600.0, cap=10):
    return list(idle_requests(streams, now_ms, set(assigned), lambda partition: caught_up, 5.0, ttl_s, cap))


def view(call_id, last_chunk_ms, open_=True, partition=0):
    return {"call_id": call_id, "stream_id": "caller", "partition": partition, "last_chunk_ms": last_chunk_ms,
            "utterance_open": open_}


def test_a_quiet_open_stream_is_flushed_only_when_its_partition_is_read_to_the_end():
    streams = {"S|a|caller": view("a", 0)}
    assert requests(streams, 6_000) == [IdleRequest("S|a|caller", "a", "caller", 0, "flush")]
    assert requests(streams, 6_000, caught_up=False) == []  # its next chunks may be waiting
    assert requests(streams, 4_000) == []
    assert requests({"S|a|caller": view("a", 0, open_=False)}, 6_000) == []  # nothing to flush


def test_idle_past_the_ttl_or_over_the_cap_the_longest_idle_go_and_moved_streams_are_dropped():
    streams = {f"S|{n}|caller": view(str(n), n * 1000, open_=False) for n in range(4)}
    streams["S|x|caller"] = view("x", 0, partition=2)  # moved to another worker in a rebalance
    chosen = requests(streams, 5_000, cap=2)
    assert "S|x|caller" in chosen  # the key alone: forget it
    assert [r.call_id for r in chosen if isinstance(r, IdleRequest)] == ["0", "1"]  # over the cap
    assert {r.action for r in chosen if isinstance(r, IdleRequest)} == {"evict"}
    chosen = requests(streams, 602_000)
    assert [r.call_id for r in chosen if isinstance(r, IdleRequest)] == ["0", "1", "2"]  # 600 s idle


def test_an_ended_stream_is_not_active_and_is_forgotten_after_the_ttl():
    status = WorkerStatus(Settings.from_env({}))
    assembler = StreamAssembler()
    key = state_key("call-1", "caller")
    state = replace(assembler.new_state("call-1", "caller"), partition=0, last_received_ms=1_000)
    status.on_stream(key, state)
    assert status.health()[1]["active_streams"] == 1 and key in status.streams

    status.on_stream(key, replace(state, ended=True))  # its end_of_stream: only its small record is left
    assert key not in status.streams and status.calls()["streams"] == []
    assert status.health()[1]["active_streams"] == 0
    assert requests(status.ended_streams, 60_000) == []  # kept meanwhile: chunks read again are duplicates
    assert requests(status.ended_streams, 602_000) == [IdleRequest(key, "call-1", "caller", 0, "evict")]
    status.forget_stream(key)  # what the agent does once the eviction is written
    assert status.ended_streams == {}


def test_a_quiet_stream_whose_changes_wait_for_a_checkpoint_gets_a_flush_request_that_checkpoints_it():
    streams = {"S|a|caller": view("a", 0, open_=False), "S|b|caller": view("b", 0, open_=False)}
    waiting = {"S|a|caller"}.__contains__
    chosen = list(idle_requests(streams, 5_000, {0}, lambda partition: True, 5.0, 600.0, 10, waiting, 5.0))
    assert chosen == [IdleRequest("S|a|caller", "a", "caller", 0, "flush")]  # b has nothing waiting
    assert list(idle_requests(streams, 4_000, {0}, lambda partition: True, 5.0, 600.0, 10, waiting, 5.0)) == []
