"""`callstt gateway` against the real broker and worker: Deepgram's own SDK and a plain
`websockets` client stream espeak calls in and get Results back; a gateway killed mid-call is
replaced by another and the call's finals still come, each once; bad parameters and tokens
are refused as Deepgram refuses them."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid

import httpx
import numpy as np
import pytest
import websockets

from callstt.models.voices.synth import ENGLISH_SENTENCES, conversation
from callstt.streams.bench.evaluation.scoring import word_error_rate
from callstt.streams.client.producer import encode_samples
from tests.pipeline import WorkerProcess, free_port, sentences_not_heard

SAMPLE_RATE = 16000
FRAME_MS = 100
ADMIN_TOKEN, CLIENT_TOKEN = secrets.token_hex(16), secrets.token_hex(16)


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokens") / "tokens"
    path.write_text(f"{ADMIN_TOKEN}\n{CLIENT_TOKEN} calls=shop-*\n")
    return path


@pytest.fixture(scope="module")
def worker(kafka_bootstrap, tmp_path_factory, tokens_file):
    process = WorkerProcess(kafka_bootstrap, tmp_path_factory.mktemp("gateway"),
                            extra_env={"CALLSTT_WEB_TOKENS_FILE": str(tokens_file)}).start()
    yield process
    process.stop()


def start_gateway(worker: WorkerProcess) -> WorkerProcess:
    """A `callstt gateway` of the worker's topics, ready when its /health answers 200."""
    port = free_port()
    return WorkerProcess(worker.bootstrap, worker.data_root / f"gateway-{port}", name=worker.name,
                         command="gateway", web_port=port,
                         extra_env={**worker.extra_env, "CALLSTT_GATEWAY_PORT": str(port)}).start(timeout=60)


@pytest.fixture(scope="module")
def gateway(worker):
    process = start_gateway(worker)
    yield process
    process.stop()


def frames(audio: np.ndarray, encoding: str = "PCM_S16LE", sample_rate: int = SAMPLE_RATE) -> list[bytes]:
    per_frame = sample_rate * FRAME_MS // 1000
    return [encode_samples(audio[start:start + per_frame], encoding) for start in range(0, len(audio), per_frame)]


def listen_url(gateway: WorkerProcess, **params) -> str:
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return f"ws://127.0.0.1:{gateway.web_port}/v1/listen?{query}"


def test_deepgram_sdk_streams_a_call_and_gets_interims_and_finals_with_words(gateway):
    from deepgram import AsyncDeepgramClient
    from deepgram.environment import DeepgramClientEnvironment

    sentences = ENGLISH_SENTENCES[:3]
    audio = conversation(sentences, "en", sample_rate=SAMPLE_RATE, silence_s=1.2)
    call_id = f"shop-{uuid.uuid4().hex[:8]}"
    environment = DeepgramClientEnvironment(base=f"http://127.0.0.1:{gateway.web_port}",
                                            production=f"ws://127.0.0.1:{gateway.web_port}",
                                            agent=f"ws://127.0.0.1:{gateway.web_port}",
                                            agent_rest=f"http://127.0.0.1:{gateway.web_port}")
    client = AsyncDeepgramClient(api_key=CLIENT_TOKEN, environment=environment)
    results = []

    async def run() -> None:
        async with client.listen.v1.connect(model="nova-3", encoding="linear16", sample_rate=SAMPLE_RATE,
                                            interim_results="true", language="en", utterance_end_ms="1000",
                                            request_options={"additional_query_parameters": {"call_id": call_id}}
                                            ) as socket:
            async def receive() -> None:
                async for message in socket:
                    results.append(message)

            receiver = asyncio.create_task(receive())
            for frame in frames(audio):
                await socket.send_media(frame)
                await asyncio.sleep(FRAME_MS / 1000)
            await socket.send_close_stream()
            await asyncio.wait_for(receiver, timeout=60)

    asyncio.run(run())
    kinds = [getattr(message, "type", None) for message in results]
    finals = [m for m in results if getattr(m, "type", None) == "Results" and m.is_final]
    interims = [m for m in results if getattr(m, "type", None) == "Results" and not m.is_final]
    assert len(finals) == len(sentences), [m.channel.alternatives[0].transcript for m in finals]
    assert interims, "interim_results=true: the SDK saw no interim"
    assert kinds[-1] == "Metadata" and kinds.count("UtteranceEnd") == len(finals)
    hypothesis = " ".join(m.channel.alternatives[0].transcript for m in finals)
    assert word_error_rate(" ".join(sentences), hypothesis) <= 0.15, hypothesis
    for final in finals:
        assert final.speech_final and final.duration > 0
        words = final.channel.alternatives[0].words
        assert words and all(w.start <= w.end and 0 <= w.confidence <= 1 for w in words)
        assert final.start <= words[0].start and words[-1].end <= final.start + final.duration + 0.05
        assert words[0].word == words[0].word.lower() and words[0].punctuated_word
    starts = [final.start for final in finals]
    assert starts == sorted(starts) and starts[-1] < len(audio) / SAMPLE_RATE


async def stream(url: str, headers: dict, chunks: list[bytes], received: list[dict], stop_after: int | None = None,
                 crash=None) -> dict:
    """Send `chunks` in real time over one connection (from `StreamStarted`'s audio_ms on),
    collecting every message, then CloseStream; or, with `crash`, call it after `stop_after`
    chunks (the gateway dies under the open socket). Returns the StreamStarted message."""
    socket = await websockets.connect(url, additional_headers=headers)
    try:
        started = json.loads(await socket.recv())
        first = started["audio_ms"] // FRAME_MS

        async def receive() -> None:
            async for text in socket:
                received.append(json.loads(text))

        receiver = asyncio.create_task(receive())
        for index, chunk in enumerate(chunks[first:], start=first):
            if stop_after is not None and index >= stop_after:
                break
            await socket.send(chunk)
            await asyncio.sleep(FRAME_MS / 1000)
        if crash is None:
            await socket.send(json.dumps({"type": "CloseStream"}))
            await asyncio.wait_for(receiver, timeout=60)
        else:
            await asyncio.sleep(0.5)  # acknowledgements come back
            crash()
            await asyncio.gather(receiver, return_exceptions=True)
        return started
    finally:
        if crash is None:
            await socket.close()


def test_a_gateway_killed_mid_call_is_replaced_and_every_final_comes_once(worker, gateway):
    sentences = ENGLISH_SENTENCES[3:7]
    audio = conversation(sentences, "en", sample_rate=8000, silence_s=1.2)
    chunks = frames(audio, "MULAW", 8000)
    call_id = f"shop-{uuid.uuid4().hex[:8]}"
    params = dict(encoding="mulaw", sample_rate=8000, call_id=call_id, stream_id="agent", ack="true")
    headers = {"Authorization": f"Token {CLIENT_TOKEN}"}
    first_gateway = start_gateway(worker)
    received: list[dict] = []

    # SIGKILL mid-call: no goodbye, no last mark, the socket dies under the client
    started = asyncio.run(stream(listen_url(first_gateway, **params), headers, chunks, received,
                                 stop_after=len(chunks) // 2, crash=first_gateway.kill))
    assert started["type"] == "StreamStarted" and not started["resumed"]
    acknowledged = max((m["audio_ms"] for m in received if m["type"] == "Acknowledged"), default=0)
    assert acknowledged > 0

    resumed = asyncio.run(stream(listen_url(gateway, **params), headers, chunks, received))
    assert resumed["resumed"] and resumed["audio_ms"] >= acknowledged and resumed["next_seq"] > 0
    finals = [m for m in received if m["type"] == "Results" and m["is_final"]]
    indexes = [m["callstt"]["utterance_index"] for m in finals]
    assert indexes == sorted(set(indexes)), f"a final came twice or out of order: {indexes}"
    texts = [m["channel"]["alternatives"][0]["transcript"] for m in finals]
    from callstt.schemas.records import Transcript  # the sentences-heard rule of the fault tests
    as_transcripts = [Transcript(transcript_id=m["callstt"]["transcript_id"], call_id=call_id, stream_id="agent",
                                 utterance_index=m["callstt"]["utterance_index"], text=text, language="en",
                                 language_probability=1.0, start_ms=0, end_ms=0, model_name="", backend="",
                                 avg_logprob=0.0, no_speech_prob=0.0, last_audio_capture_ts_ms=0,
                                 last_audio_received_ts_ms=0, produced_ts_ms=0)
                      for m, text in zip(finals, texts)]
    assert sentences_not_heard(sentences, as_transcripts) == [], texts
    assert received[-1]["type"] == "Metadata"


def test_bad_parameters_tokens_and_calls_are_refused_before_the_upgrade(gateway):
    base = f"http://127.0.0.1:{gateway.web_port}/v1/listen"
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    client = {**upgrade, "Authorization": f"Token {CLIENT_TOKEN}"}

    no_token = httpx.get(f"{base}?encoding=linear16&sample_rate=16000&call_id=shop-1", headers=upgrade)
    assert no_token.status_code == 401 and no_token.json()["err_code"] == "INVALID_AUTH"
    wrong_call = httpx.get(f"{base}?encoding=linear16&sample_rate=16000&call_id=bank-1", headers=client)
    assert wrong_call.status_code == 403 and "bank-1" in wrong_call.json()["err_msg"]
    for query, named in (("encoding=opus&sample_rate=16000", "encoding"), ("encoding=linear16", "sample_rate"),
                         ("encoding=linear16&sample_rate=16000&redact=dna", "redact"),
                         ("encoding=linear16&sample_rate=16000&lenguage=en", "lenguage")):
        refused = httpx.get(f"{base}?{query}&call_id=shop-2", headers=client)
        assert refused.status_code == 400, query
        assert refused.json()["err_code"] == "Bad Request" and named in refused.json()["err_msg"]
    # the page-wide token opens every call; the client token no page with every call
    admin = httpx.get(f"{base}?encoding=linear16&sample_rate=16000&lenguage=en&call_id=bank-1",
                      headers={**upgrade, "Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert admin.status_code == 400
    worker_page = httpx.get(f"http://127.0.0.1:{gateway.web_port}/health")
    assert worker_page.status_code == 200 and worker_page.json()["status"] == "ok"
    started = time.monotonic()
    assert httpx.get(f"http://127.0.0.1:{gateway.web_port}/listen").status_code == 200
    assert time.monotonic() - started < 5
