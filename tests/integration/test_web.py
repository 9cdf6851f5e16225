"""The worker's web pages, on a real worker: status codes and bodies as operators and old clients see them."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid

import httpx
import pytest

from models.scoring import word_error_rate
from models.synth import ENGLISH_SENTENCES, conversation, synthesize_wav
from streams.client.producer import CallPublisher
from tests.pipeline import CALLSTT, WorkerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(kafka_bootstrap, tmp_path_factory):
    process = WorkerProcess(kafka_bootstrap, tmp_path_factory.mktemp("web"))
    # Start by hand, watching /health from the first moment the web server answers.
    process.process = subprocess.Popen([CALLSTT, "worker"], env=process.env(), stdout=open(process.log_file, "ab"),
                                       stderr=subprocess.STDOUT, start_new_session=True)
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"http://127.0.0.1:{process.web_port}/health", timeout=1)
            seen.append((response.status_code, response.json()))
            if response.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    process.health_history = seen
    yield process
    process.stop()


def url(worker, path: str) -> str:
    return f"http://127.0.0.1:{worker.web_port}{path}"


def test_health_is_503_with_a_reason_until_ready_then_200(worker):
    history = worker.health_history
    assert history and history[-1][0] == 200, worker.log_tail()
    final = history[-1][1]
    assert final["status"] == "ok" and final["partitions"] == [0, 1, 2]
    not_ready = [body for code, body in history if code == 503]
    # The web server comes up before the models finish loading or partitions are assigned.
    assert not_ready, f"never saw the worker starting: {history[:3]}"
    assert all(body["reason"] in ("models loading", "no partitions of the audio topic assigned yet")
               for body in not_ready)


def test_api_root_models_and_faust_pages(worker):
    api = httpx.get(url(worker, "/api")).json()
    assert api["service"] == "callstt" and "/health" in api["endpoints"]
    models = httpx.get(url(worker, "/models")).json()
    route = models["routes"]["*"]
    assert route["backend"] == "faster-whisper" and route["model"] == "base"
    assert route["compute_type"] == "int8" and route["device"] == "cpu" and route["load_seconds"] > 0
    assert route["size_bytes"] == 2 * 72608766
    assert httpx.get(url(worker, "/router/")).status_code == 200
    assert httpx.get(url(worker, "/table/")).status_code == 200


def test_post_transcribe_returns_words_and_survives_a_corrupt_file(worker, tmp_path):
    sentence = ENGLISH_SENTENCES[0]
    wav = synthesize_wav(sentence, tmp_path / "call.wav")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)) * 40)

    bad = httpx.post(url(worker, "/transcribe"), files={"file": ("corrupt.wav", corrupt.read_bytes())}, timeout=60)
    assert bad.status_code == 415 and "audio" in bad.json()["error"]

    response = httpx.post(url(worker, "/transcribe"), files={"file": ("call.wav", wav.read_bytes())},
                          data={"language": "en"}, timeout=150)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["language"] == "en" and body["call_id"].startswith("http-")
    assert word_error_rate(sentence, body["text"]) <= 0.1
    assert [w["word"] for w in body["words"]] and all(w["start"] <= w["end"] for w in body["words"])
    assert body["sentences"] and body["segments"]
    assert httpx.get(url(worker, "/health")).status_code == 200  # still serving

    missing = httpx.post(url(worker, "/transcribe"), files={"other": ("x", b"1")}, timeout=30)
    assert missing.status_code == 400


def test_calls_and_metrics_after_a_call(worker):
    call_id = f"web-{uuid.uuid4().hex[:6]}"
    with CallPublisher(worker.bootstrap, worker.audio_topic) as publisher:
        publisher.publish_call(conversation(ENGLISH_SENTENCES[:2]), call_id, "agent", chunk_ms=100)
    worker.transcripts(expected=2, idle_s=1, call_ids={call_id})
    calls = httpx.get(url(worker, "/calls")).json()
    mine = [t for t in calls["recent_transcripts"] if t["call_id"] == call_id]
    assert [t["utterance_index"] for t in mine] == [0, 1] and mine[0]["text"]

    text = httpx.get(url(worker, "/metrics")).text
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    for histogram in ("callstt_utterance_duration_seconds", "callstt_inference_seconds",
                      "callstt_realtime_factor_ratio", "callstt_end_of_speech_to_publish_seconds",
                      "callstt_endpoint_to_publish_seconds"):
        assert values[f"{histogram}_count"] >= 2, histogram
    assert values['callstt_utterances_total{reason="silence"}'] >= 2
    assert values['callstt_transcripts_total{language="en",model="base"}'] >= 2
    assert values["callstt_chunks_total"] > 0 and values["callstt_chunk_bytes_total"] > 0
    assert values["callstt_model_load_seconds"] > 0


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def test_live_page_shows_a_transcript_as_it_is_produced(worker):
    call_id = f"live-{uuid.uuid4().hex[:6]}"
    sentence = ENGLISH_SENTENCES[4]
    browser = chromium()
    try:
        browser.get(url(worker, "/calls/live"))
        assert "Live calls" in browser.page_source

        def stream_call():
            with CallPublisher(worker.bootstrap, worker.audio_topic) as publisher:
                publisher.publish_call(conversation([sentence]), call_id, "caller", chunk_ms=20, realtime=True)

        streaming = threading.Thread(target=stream_call)
        streaming.start()
        deadline = time.monotonic() + 60
        rows = []
        while time.monotonic() < deadline:
            # One atomic snapshot: the page rebuilds its rows every second, so element handles go stale.
            rows = browser.execute_script(
                "return Array.from(document.querySelectorAll('#transcripts tbody tr')).map(r => r.innerText)")
            if any(call_id in row for row in rows):
                break
            time.sleep(0.5)
        streaming.join()
        row = next(row for row in rows if call_id in row)
        assert "delivery address" in row.lower()
    finally:
        browser.quit()
