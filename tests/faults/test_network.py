"""A worker behind a bad network: latency with jitter, a bandwidth limit, connections reset, then
a 20 s partition, between the worker and the broker (Toxiproxy on loopback; the broker
advertises the proxy's port, so every connection of the worker goes through it), while a call
streams in real time. The call's publisher and the test's reader reach the broker directly.
The worker keeps transcribing, loses nothing, says what it saw, and recovers with the network."""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import replace

import httpx
import pytest

from callstt.infra.local.kafka import LocalKafka
from callstt.infra.local.toxiproxy import Toxiproxy
from callstt.streams.bench.evaluation.scoring import word_error_rate
from callstt.streams.worker.broker_probe import UNREACHABLE_AFTER_S
from tests.conftest import free_port_pair
from tests.faults.test_worker_crash import PLAN, SENTENCES, call_with_midpoints
from tests.pipeline import WorkerProcess, by_call, free_port, sentences_not_heard

pytestmark = pytest.mark.faults

# (seconds into the call, what happens): each fault lasts until the next line.
TIMELINE = [(2.0, "latency"), (8.0, "bandwidth"), (14.0, "reset"), (17.0, "clear"), (18.0, "partition"),
            (38.0, "heal")]  # a 20 s cut: /health says so after 15 s without an answer


@pytest.fixture(scope="module")
def proxied_broker():
    cluster = LocalKafka(name=f"test-net-{os.getpid()}", brokers=1, port=free_port_pair(6), proxied=True)
    cluster.wipe()
    cluster.start()
    yield cluster
    cluster.wipe()


FAULT_NAMES = {"before": "none yet", "latency": "latency 100 +- 50 ms each way", "bandwidth": "100 KB/s each way",
               "reset": "connections reset", "clear": "none (between faults)", "partition": "20 s partition",
               "heal": "after the partition"}


def report_each_fault(scenario, received, call_id: str, sentences: list[str], sentence_midpoints_s: list[float]) -> None:
    """One summary row per fault: the sentences spoken while it lasted (by their midpoint), and
    how many of them came back (lost: words that did not, tests/pipeline.py sentences_not_heard,
    against the transcripts of those utterances and their neighbours)."""
    starts = [(0.0, "before")] + TIMELINE
    transcripts = [t for t in received if t.call_id == call_id]
    for (start, step), (end, _) in zip(starts, starts[1:] + [(float("inf"), "")]):
        indices = {i for i, at in enumerate(sentence_midpoints_s) if start <= at < end}
        if not indices:
            continue
        mine = [t for t in transcripts if t.utterance_index in indices]
        unique = {t.transcript_id for t in mine}
        around = [t for t in transcripts if min(indices) - 1 <= t.utterance_index <= max(indices) + 1]
        lost = sentences_not_heard([sentences[i] for i in sorted(indices)], around)
        scenario.add(f"network: {FAULT_NAMES[step]}", calls=1, expected=len(indices), received=len(unique),
                     lost=len(lost), duplicated=len(mine) - len(unique),
                     note=f"sentences spoken {start:.0f}-{min(end, 60):.0f} s into the call; Toxiproxy")


def apply(toxiproxy: Toxiproxy, step: str, toxics: list[str]) -> None:
    while toxics:
        toxiproxy.remove_toxic("kafka", toxics.pop())
    if step == "latency":  # 100 ms +- 50 ms each way
        toxics += [toxiproxy.add_toxic("kafka", "latency", stream, latency=100, jitter=50)
                   for stream in ("upstream", "downstream")]
    elif step == "bandwidth":  # 100 KB/s each way: about 3x the call's audio
        toxics += [toxiproxy.add_toxic("kafka", "bandwidth", stream, rate=100) for stream in ("upstream", "downstream")]
    elif step == "reset":  # every connection reset as soon as it carries data
        toxics.append(toxiproxy.add_toxic("kafka", "reset_peer", "downstream", timeout=0))
    elif step == "partition":
        toxiproxy.set_enabled("kafka", False)
    elif step == "heal":
        toxiproxy.set_enabled("kafka", True)


def test_a_worker_behind_a_faulty_network_keeps_transcribing_and_loses_nothing(proxied_broker, tmp_path, scenario):
    call_id = f"network-{uuid.uuid4().hex[:6]}"
    chunks, midpoints = call_with_midpoints(call_id, SENTENCES * 2, start_ms=int(time.time() * 1000) + 1000)
    node = proxied_broker.node(1)
    with Toxiproxy.started(free_port(), tmp_path / "toxiproxy.log") as toxiproxy:
        toxiproxy.proxy("kafka", listen=proxied_broker.proxy_port(node), upstream=proxied_broker.proxied_port(node))
        worker = WorkerProcess(proxied_broker.proxied_bootstrap_servers, tmp_path).start()
        direct = replace(worker, bootstrap=proxied_broker.bootstrap_servers)  # the test's own clients
        scenario.watch(worker)
        health: list[tuple[float, str, str]] = []
        toxics: list[str] = []
        applied_at: dict[str, float] = {}  # wall clock (ms) of each step

        def stream() -> None:
            started = time.monotonic()
            with direct.publisher() as publisher:
                for index, chunk in enumerate(chunks):
                    time.sleep(max(started + index * PLAN.chunk_ms / 1000 - time.monotonic(), 0))
                    publisher.send(chunk)

        streaming = threading.Thread(target=stream)
        try:
            began = time.monotonic()
            streaming.start()
            for at, step in TIMELINE:
                while time.monotonic() - began < at:
                    try:
                        body = httpx.get(f"http://127.0.0.1:{worker.web_port}/health", timeout=2).json()
                        health.append((round(time.monotonic() - began, 1), body["status"], body.get("reason", "")))
                    except httpx.HTTPError as error:
                        health.append((round(time.monotonic() - began, 1), "no answer", str(error)))
                    time.sleep(0.5)
                apply(toxiproxy, step, toxics)
                applied_at[step] = time.time() * 1000
            streaming.join()
            received = direct.transcripts(expected=2 * len(SENTENCES), timeout=240)
            healed = httpx.get(f"http://127.0.0.1:{worker.web_port}/health", timeout=5).json()
        finally:
            streaming.join()
            worker.stop()
    cut = [status for at, status, _ in health if TIMELINE[-2][0] + UNREACHABLE_AFTER_S + 1 <= at]
    print("health during the cut:", cut, "after:", healed["status"])
    report_each_fault(scenario, received, call_id, SENTENCES * 2, [index * PLAN.chunk_ms / 1000 for index in midpoints])
    transcripts = by_call(received).get(call_id, [])
    assert [t.utterance_index for t in transcripts] == list(range(2 * len(SENTENCES))), worker.log_tail(150)
    assert word_error_rate(SENTENCES * 2, [t.text for t in transcripts]) <= 0.15, [t.text for t in transcripts]
    # It kept transcribing through latency, a slow link and resets: the sentences that ended
    # before the cut (about one in every 3.5 s) were published before it.
    before_cut = [t for t in transcripts if t.produced_ts_ms < applied_at["partition"]]
    assert len(before_cut) >= 3, [(t.utterance_index, t.produced_ts_ms - applied_at["partition"]) for t in transcripts]
    # What it saw: the broker unreachable during the cut (once its probe had waited long enough),
    # never before it (latency, a slow link and resets are weathered), and fine again after it.
    assert cut and set(cut) == {"broker_unreachable"}, health
    assert "broker_unreachable" not in {status for at, status, _ in health if at < TIMELINE[-2][0]}, health
    assert healed["status"] == "ok"
    assert "no answer from the broker" in worker.log_file.read_text(errors="replace")
