"""Broker failures under a running pipeline: a 3-broker cluster (replication 3, min ISR 2,
acks=all) loses one broker mid-call and gets it back; then the whole cluster stops for ~20 s
and restarts. Workers reconnect by themselves and every sentence is transcribed."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest

from callstt.models.voices.synth import ENGLISH_SENTENCES, conversation
from callstt.streams.bench.evaluation.scoring import word_error_rate
from callstt.streams.client.producer import ChunkPlan, iter_chunks
from tests.pipeline import WorkerProcess, by_call

pytestmark = pytest.mark.faults

SENTENCES = ENGLISH_SENTENCES[:4]


@pytest.fixture(scope="module")
def cluster(three_brokers):
    with three_brokers("failover", port=29292) as cluster:
        yield cluster


def stream(worker: WorkerProcess, call_id: str, audio: np.ndarray) -> None:
    plan = ChunkPlan(16000, "PCM_S16LE", 20)
    started = time.monotonic()
    with worker.publisher() as publisher:
        for index, chunk in enumerate(iter_chunks(audio, call_id, "caller", plan, int(time.time() * 1000))):
            delay = started + index * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            publisher.send(chunk)


def check(received, call_id: str, scenario, name: str) -> None:
    scenario.report(received, {call_id: SENTENCES}, name=name)
    transcripts = by_call(received).get(call_id, [])
    assert [t.utterance_index for t in transcripts] == list(range(len(SENTENCES)))
    assert word_error_rate(SENTENCES, [t.text for t in transcripts]) <= 0.15


def test_one_broker_down_then_the_whole_cluster_down(cluster, tmp_path, scenario):
    worker = WorkerProcess(cluster.bootstrap_servers, tmp_path, extra_env={
        "CALLSTT_TOPIC_REPLICATION": "3", "CALLSTT_TOPIC_PARTITIONS": "3"}).start()
    scenario.watch(worker)
    audio = conversation(SENTENCES)
    try:
        # 1. One broker stops mid-call and comes back: ISR 2 of 3 keeps acks=all writes going.
        first = f"one-down-{uuid.uuid4().hex[:6]}"
        streaming = threading.Thread(target=stream, args=(worker, first, audio))
        streaming.start()
        time.sleep(4)
        cluster.stop_node(3)
        time.sleep(6)
        cluster.start_node(3)
        streaming.join()
        check(worker.transcripts(expected=len(SENTENCES), timeout=180, idle_s=5), first, scenario,
              "1 of 3 brokers down mid-call")

        # 2. The whole cluster stops for ~20 s between two calls; the worker keeps running.
        cluster.stop()
        time.sleep(20)
        cluster.start(timeout=120)
        second = f"all-down-{uuid.uuid4().hex[:6]}"
        stream(worker, second, audio)
        check(worker.transcripts(expected=2 * len(SENTENCES), timeout=240, idle_s=5), second, scenario,
              "whole cluster down 20 s")
        assert worker.process.poll() is None, "the worker should have reconnected, not exited"
    finally:
        worker.stop()
