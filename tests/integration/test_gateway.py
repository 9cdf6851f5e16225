"""`callstt gateway` against the real broker and worker: Deepgram's own SDK and a plain
`websockets` client stream espeak calls in and get Results back; a gateway killed mid-call is
replaced by another and the call's finals still come, each once; bad parameters and tokens
are refused as Deepgram refuses them."""

from __future__ import annotations

import asyncio
import base64
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
from callstt.streams.bench.corpus import default_speech_dir, load_speech
from callstt.streams.client.producer import load_audio
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
    # One utterance per model call: the same audio gives the same text whichever way it came,
    # so the gateway's word error rate is compared with the worker's own without packing's noise.
    process = WorkerProcess(kafka_bootstrap, tmp_path_factory.mktemp("gateway"),
                            extra_env={"CALLSTT_WEB_TOKENS_FILE": str(tokens_file),
                                       "CALLSTT_INFERENCE_MODE": "single"}).start()
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


async def sdk_call(gateway: WorkerProcess, audio: np.ndarray, call_id: str, **params) -> list:
    """One call streamed in real time through Deepgram's own SDK (pointed at the gateway), then
    CloseStream; every message the SDK parsed, in order."""
    from deepgram import AsyncDeepgramClient
    from deepgram.environment import DeepgramClientEnvironment

    http, ws = f"http://127.0.0.1:{gateway.web_port}", f"ws://127.0.0.1:{gateway.web_port}"
    environment = DeepgramClientEnvironment(base=http, production=ws, agent=ws, agent_rest=http)
    client = AsyncDeepgramClient(api_key=CLIENT_TOKEN, environment=environment)
    messages: list = []
    async with client.listen.v1.connect(model="nova-3", encoding="linear16", sample_rate=SAMPLE_RATE,
                                        request_options={"additional_query_parameters": {"call_id": call_id}},
                                        **params) as socket:
        async def receive() -> None:
            async for message in socket:
                messages.append(message)

        receiver = asyncio.create_task(receive())
        for frame in frames(audio):
            await socket.send_media(frame)
            await asyncio.sleep(FRAME_MS / 1000)
        await socket.send_close_stream()
        await asyncio.wait_for(receiver, timeout=90)
    return messages


def final_texts(messages: list) -> list[str]:
    return [m.channel.alternatives[0].transcript for m in messages
            if getattr(m, "type", None) == "Results" and m.is_final]


def test_deepgram_sdk_streams_a_call_and_gets_interims_and_finals_with_words(gateway):
    sentences = ENGLISH_SENTENCES[:3]
    audio = conversation(sentences, "en", sample_rate=SAMPLE_RATE, silence_s=1.2)
    call_id = f"shop-{uuid.uuid4().hex[:8]}"
    results = asyncio.run(sdk_call(gateway, audio, call_id, interim_results="true", language="en",
                                   utterance_end_ms="1000"))
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
                 crash=None, starts: bool = True) -> dict:
    """Send `chunks` in real time over one connection (from `StreamStarted`'s audio_ms on, when the
    connection `starts` with one: ack=true), collecting every message, then CloseStream; or, with
    `crash`, call it after `stop_after` chunks (the gateway dies under the open socket). Returns
    the StreamStarted message."""
    socket = await websockets.connect(url, additional_headers=headers)
    try:
        started = json.loads(await socket.recv()) if starts else {"audio_ms": 0}
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
    gaps_before = worker.metrics().get("callstt_gap_chunks_total", 0.0)

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
    # the second gateway's seqs went on from the first's last acknowledged chunk: no gap to fill
    assert worker.metrics().get("callstt_gap_chunks_total", 0.0) == gaps_before


def test_a_second_connection_to_an_open_stream_takes_it_over_where_the_first_left_it(gateway):
    """A client whose socket died reconnects before the gateway noticed: the old connection is
    closed (4000) and the new one goes on from the old one's last acknowledged chunk."""
    audio = conversation(ENGLISH_SENTENCES[:1], "en", sample_rate=SAMPLE_RATE)
    chunks = frames(audio)
    url = listen_url(gateway, encoding="linear16", sample_rate=SAMPLE_RATE, call_id=f"shop-{uuid.uuid4().hex[:8]}",
                     ack="true")
    headers = {"Authorization": f"Token {CLIENT_TOKEN}"}

    async def run() -> tuple[list[dict], dict, int]:
        first = await websockets.connect(url, additional_headers=headers)
        messages = [json.loads(await first.recv())]
        for chunk in chunks[:10]:
            await first.send(chunk)
        while not any(m["type"] == "Acknowledged" and m["seq"] == 9 for m in messages):
            messages.append(json.loads(await first.recv()))
        second = await websockets.connect(url, additional_headers=headers)
        started = json.loads(await second.recv())
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await first.recv()
        await second.close()
        return messages, started, first.close_code

    messages, started, old_code = asyncio.run(run())
    assert messages[0]["type"] == "StreamStarted" and not messages[0]["resumed"]
    assert old_code == 4000
    assert started["resumed"] and started["next_seq"] == 10 and started["audio_ms"] == 10 * FRAME_MS


@pytest.fixture(scope="module")
def translator_and_speaker(worker):
    """`callstt translator` and `callstt speaker` on the worker's topics (for the one test that asks
    the gateway for translations and speech)."""
    processes = [WorkerProcess(worker.bootstrap, worker.data_root / command, name=worker.name, command=command,
                               extra_env=worker.extra_env) for command in ("translator", "speaker")]
    try:
        for process in processes:
            process.start(timeout=180)
        yield processes
    finally:
        for process in processes:
            process.stop()


def test_two_channels_are_two_streams_each_with_its_finals_translations_and_speech(gateway, translator_and_speaker):
    """multichannel=true: each channel its own stream of the call; translate_to and speech=true:
    each final's Portuguese translation and its synthesized speech come on the same socket, all
    before Metadata."""
    agent_says, customer_says = ENGLISH_SENTENCES[0], ENGLISH_SENTENCES[2]
    first = conversation([agent_says], "en", sample_rate=SAMPLE_RATE, silence_s=1.5)
    second = conversation([customer_says], "en", sample_rate=SAMPLE_RATE, silence_s=1.5)
    left = np.concatenate([first, np.zeros(len(second), dtype=np.float32)])
    right = np.concatenate([np.zeros(len(first), dtype=np.float32), second])
    pcm = [np.frombuffer(encode_samples(channel, "PCM_S16LE"), dtype="<i2") for channel in (left, right)]
    interleaved = np.stack(pcm, axis=1).reshape(-1).tobytes()
    frame_bytes = SAMPLE_RATE * FRAME_MS // 1000 * 2 * 2
    chunks = [interleaved[i:i + frame_bytes] for i in range(0, len(interleaved), frame_bytes)]
    url = listen_url(gateway, encoding="linear16", sample_rate=SAMPLE_RATE, channels=2, multichannel="true",
                     stream_id="agent,customer", language="en", translate_to="pt", speech="true",
                     call_id=f"shop-{uuid.uuid4().hex[:8]}")
    received: list[dict] = []
    asyncio.run(stream(url, {"Authorization": f"Token {CLIENT_TOKEN}"}, chunks, received, starts=False))

    finals = [m for m in received if m["type"] == "Results" and m["is_final"]]
    by_stream = {m["callstt"]["stream_id"]: m for m in finals}
    assert sorted(by_stream) == ["agent", "customer"] and len(finals) == 2, [m["callstt"] for m in finals]
    assert by_stream["agent"]["channel_index"] == [0, 2] and by_stream["customer"]["channel_index"] == [1, 2]
    for stream_id, said in (("agent", agent_says), ("customer", customer_says)):
        assert word_error_rate(said, by_stream[stream_id]["channel"]["alternatives"][0]["transcript"]) <= 0.3
    translations = [m for m in received if m["type"] == "Translation"]
    assert sorted((m["stream_id"], m["target_language"], m["status"]) for m in translations) == \
        [("agent", "pt", "OK"), ("customer", "pt", "OK")]
    assert all(m["text"].strip() for m in translations)
    speech = [m for m in received if m["type"] == "Speech"]
    assert {m["stream_id"] for m in speech} == {"agent", "customer"}
    spoken_s = sum(len(base64.b64decode(m["audio"])) for m in speech) / (2 * 16000)
    assert spoken_s > 1.0, spoken_s
    assert received[-1]["type"] == "Metadata" and received[-1]["channels"] == 2


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
    health = httpx.get(f"http://127.0.0.1:{gateway.web_port}/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert httpx.get(f"http://127.0.0.1:{gateway.web_port}/listen").status_code == 200  # the page holds no call content


def english_recordings() -> list[tuple[str, np.ndarray]]:
    """The real English recordings with their references (../shared/speech), else espeak sentences."""
    clips = [clip for clip in load_speech(default_speech_dir()) or [] if clip.language == "en"]
    if clips:
        return [(clip.reference, load_audio(clip.path, SAMPLE_RATE)) for clip in clips]
    return [(text, conversation([text], "en", sample_rate=SAMPLE_RATE)) for text in ENGLISH_SENTENCES]


def test_real_recordings_through_the_gateway_score_as_straight_to_kafka(worker, gateway):
    """The same recordings as calls straight to Kafka and through Deepgram's SDK and the gateway,
    on the same worker: word error rates within 1 point."""
    recordings = english_recordings()
    run = uuid.uuid4().hex[:6]
    direct_ids = [f"direct-{run}-{index}" for index in range(len(recordings))]
    with worker.publisher() as publisher:
        for call_id, (_, audio) in zip(direct_ids, recordings):
            publisher.publish_call(audio, call_id=call_id, language="en", chunk_ms=FRAME_MS)
    direct = worker.transcripts(expected=len(recordings), call_ids=set(direct_ids), timeout=300)
    direct_texts = [" ".join(t.text for t in sorted((t for t in direct if t.call_id == call_id),
                                                    key=lambda t: t.utterance_index)) for call_id in direct_ids]

    async def through_gateway() -> list[list]:
        return await asyncio.gather(*(sdk_call(gateway, audio, f"shop-{run}-{index}", language="en")
                                      for index, (_, audio) in enumerate(recordings)))

    gateway_texts = [" ".join(final_texts(messages)) for messages in asyncio.run(through_gateway())]
    references = [reference for reference, _ in recordings]
    direct_wer = word_error_rate(references, direct_texts)
    gateway_wer = word_error_rate(references, gateway_texts)
    print(f"WER over {len(recordings)} English recordings: straight to Kafka {direct_wer:.3f}, "
          f"through the gateway {gateway_wer:.3f}")
    differing = [(r, d, g) for r, d, g in zip(references, direct_texts, gateway_texts) if d != g]
    assert gateway_wer <= direct_wer + 0.01, differing


def test_the_listening_page_shows_what_a_fake_microphone_says(gateway, tmp_path):
    """Headless Chromium with a fake microphone playing a WAV file: sign in, press Start, and the
    page shows the sentence's final."""
    import wave

    from selenium.webdriver.common.by import By

    from tests.integration.test_web import chromium_options

    sentence = ENGLISH_SENTENCES[1]
    audio = conversation([sentence], "en", sample_rate=48000, silence_s=3.0)
    path = tmp_path / "microphone.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(48000)
        wav.writeframes(encode_samples(audio, "PCM_S16LE"))
    browser = chromium_options("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                               f"--use-file-for-fake-audio-capture={path}", "--autoplay-policy=no-user-gesture-required")
    try:
        page = f"http://127.0.0.1:{gateway.web_port}"
        browser.get(f"{page}/login?next=/listen")
        browser.find_element(By.ID, "token").send_keys(CLIENT_TOKEN)
        browser.find_element(By.ID, "sign-in").click()
        deadline = time.monotonic() + 10
        while not browser.find_elements(By.ID, "microphone"):
            assert time.monotonic() < deadline, browser.page_source[:500]
            time.sleep(0.1)
        call = browser.find_element(By.ID, "call")
        call.clear()
        call.send_keys(f"shop-page-{uuid.uuid4().hex[:8]}")  # a call this client token may use
        browser.find_element(By.ID, "microphone").click()
        deadline = time.monotonic() + 60
        heard = ""
        while time.monotonic() < deadline:
            finals = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "#finals .final")]
            heard = " ".join(finals)
            if finals and word_error_rate(sentence, finals[0]) <= 0.3:
                break
            time.sleep(0.3)
        assert heard and word_error_rate(sentence, heard.split(".")[0]) <= 0.3, (heard, browser.find_element(
            By.ID, "status").text)
    finally:
        browser.quit()
