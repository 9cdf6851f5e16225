"""Ten times the stream cap in distinct call IDs (2*10^4) in seconds, none of them ever ending: the
stream cap evicts the idle ones, memory stays bounded, and a real call published after the flood
is still transcribed. CALLSTT_FLOOD_CALLS=100000 runs it at the scale it was first run at (10 more
minutes on 2 cores, the same result); ten times the cap proves eviction and the bound as well."""

from __future__ import annotations

import os
import threading
import time
import uuid

import httpx
import numpy as np
import pytest

from callstt.models.voices.synth import ENGLISH_SENTENCES, conversation
from callstt.schemas.codec import AvroCodec
from callstt.schemas.records import AudioChunk, Encoding
from callstt.streams.bench.evaluation.scoring import word_error_rate
from tests.pipeline import WorkerProcess, by_call

pytestmark = pytest.mark.faults

FLOOD_CALLS = int(os.environ.get("CALLSTT_FLOOD_CALLS", "20000"))
STREAM_CAP = 2000


# About 2 minutes on this machine at 2*10^4 ids, 12 at 10^5; a slower machine (or one sharing its
# cores) needs longer, and the test asserts what comes out, not how fast: the suite's 15-minute
# limit is raised for it.
@pytest.mark.timeout(2400)
def test_a_flood_of_call_ids_is_evicted_and_good_calls_go_on(kafka_bootstrap, tmp_path, scenario):
    worker = WorkerProcess(kafka_bootstrap, tmp_path, extra_env={"CALLSTT_MAX_STREAMS": str(STREAM_CAP)}).start()
    scenario.watch(worker)
    peak = {"streams": 0}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                health = httpx.get(f"http://127.0.0.1:{worker.web_port}/health", timeout=5).json()
                peak["streams"] = max(peak["streams"], health["active_streams"])
            except httpx.HTTPError:
                pass
            time.sleep(1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    run = uuid.uuid4().hex[:6]
    started = time.monotonic()
    try:
        codec = AvroCodec()
        silence = np.zeros(320, dtype="<i2").tobytes()  # 20 ms at 8 kHz, 16-bit
        with worker.publisher() as publisher:
            for index in range(FLOOD_CALLS):
                chunk = AudioChunk(call_id=f"flood-{run}-{index}", stream_id="caller", seq=0,
                                   capture_ts_ms=int(time.time() * 1000), sample_rate=8000,
                                   encoding=Encoding.PCM_S16LE, channels=1, payload=silence)
                publisher.send_raw(chunk.call_id, codec.encode_chunk(chunk, worker.audio_topic))
        published_s = time.monotonic() - started
        good = f"after-flood-{run}"
        with worker.publisher() as publisher:
            publisher.publish_call(conversation(ENGLISH_SENTENCES[:1]), good, chunk_ms=100)
        received = worker.transcripts(expected=1, timeout=900, idle_s=1)
        transcripts = by_call(received).get(good, [])
        # The cap is enforced by the idle timer, a little behind the flood: wait for it to catch up.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            settled = httpx.get(f"http://127.0.0.1:{worker.web_port}/health", timeout=5).json()["active_streams"]
            if settled <= STREAM_CAP:
                break
            time.sleep(2)
    finally:
        done.set()
        watcher.join()
        worker.stop()
    row = scenario.report(received, {good: 1}, name="call-id flood", calls=FLOOD_CALLS + 1,
                          note=f"{FLOOD_CALLS} silent call ids published in {published_s:.0f} s, processed in "
                               f"{time.monotonic() - started:.0f} s; max active streams {peak['streams']} "
                               f"(cap {STREAM_CAP}), {settled} after eviction")
    assert len(transcripts) == 1 and word_error_rate(ENGLISH_SENTENCES[0], transcripts[0].text) <= 0.15
    assert row.max_rss_mb < 1500
    assert settled <= STREAM_CAP  # evicted down to the cap: state (and memory) stay bounded
    evicted = worker.log_file.read_text(errors="replace").count("evicting stream call=flood-")
    assert evicted >= FLOOD_CALLS - STREAM_CAP
