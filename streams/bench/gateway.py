"""The gateway at live pace (`callstt bench --gateway`): K conversations straight to Kafka and,
at the same moment, the same K through `callstt gateway` (one WebSocket per stream, Deepgram's
live-API shape), on one worker, and per utterance

    the utterance's last audio sent by the client -> its final received by the client

p50/p95 side by side: what the gateway adds (its socket, its producer, its follower of the
transcript topic) to the path a Kafka producer takes. Both copies of each utterance reach the
worker together, so they meet the same load and, mostly, the same batches: the difference per
utterance is the gateway's, with the worker's own variation from run to run taken out. Both clients send 20 ms frames at real-time
pace. Straight to Kafka, a chunk's capture time is when it was sent (the live section's "end of
speech"); through the gateway, the gateway stamps a chunk when its frame arrives, and the client
finds the frame's own send time by that stamp, so the hop from client to gateway is inside the
gateway's figure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

import websockets

from callstt.schemas.codec import AvroCodec
from callstt.streams.bench.chain import first_arrivals, wait_until_quiet
from callstt.streams.bench.collecting import Arrival, RecordCollector
from callstt.streams.bench.sections import _live_jobs, conversation_accuracy
from callstt.streams.bench.stats import _r, summary
from callstt.streams.bench.subprocesses import WorkerSubprocess, free_port
from callstt.streams.bench.workload import ENCODING, TELEPHONE_RATE, Conversation
from callstt.streams.client.producer import PLATFORM_CHUNK_MS, CallPublisher, ChunkPlan, encode_samples
from callstt.streams.client.publishing import send_calls
from callstt.streams.client.reader import TranscriptReader
from callstt.schemas.records import Transcript

log = logging.getLogger("callstt.bench")

GATEWAY_CALLS = [1, 2, 3]  # per side: the worker carries 2K conversations
GATEWAY_TARGET_MS = 50  # what the issue allows the gateway to add at p95
WIRE_ENCODINGS = {"MULAW": "mulaw", "ALAW": "alaw", "PCM_S16LE": "linear16"}


def gateway_process(worker: WorkerSubprocess) -> WorkerSubprocess:
    """A `callstt gateway` of the worker's topics (its name), on a port of its own."""
    port = free_port()
    return WorkerSubprocess(worker.bootstrap, worker.data_root, name=worker.name, command="gateway", web_port=port,
                            extra_env={**worker.extra_env, "CALLSTT_GATEWAY_PORT": str(port)})


def run_gateway(worker: WorkerSubprocess, gateway: WorkerSubprocess, pool: list[Conversation], calls: list[int],
                seed: int, run_id: str) -> dict[str, Any]:
    """The gateway section: one live run per K straight to Kafka, then one through the gateway."""
    gateway.start(timeout=60)
    report: dict[str, Any] = {"frame_ms": PLATFORM_CHUNK_MS, "target_added_p95_ms": GATEWAY_TARGET_MS, "live": []}
    for k in calls:
        log.info("gateway: %d calls straight to Kafka and the same %d through the gateway", k, k)
        start = time.time() + 3.0  # both sides begin together
        result: dict[str, Any] = {}
        direct_side = threading.Thread(target=lambda: result.update(direct=run_direct(worker, pool, k, seed,
                                                                                      f"{run_id}-direct", start)))
        direct_side.start()
        through = run_through_gateway(worker, gateway, pool, k, seed, f"{run_id}-gateway", start)
        direct_side.join()
        direct = result["direct"]
        added = (None if through["delay_s"]["p95"] is None or direct["delay_s"]["p95"] is None
                 else _r((through["delay_s"]["p95"] - direct["delay_s"]["p95"]) * 1000, 1))
        # the same utterance's two delays (both runs send the same audio, in the same order)
        direct_delays, gateway_delays = direct.pop("by_utterance"), through.pop("by_utterance")
        paired = [1000 * (gateway_delays[key] - delay) for key, delay in direct_delays.items() if key in gateway_delays]
        report["live"].append({"calls": k, "direct": direct, "gateway": through, "added_p95_ms": added,
                               "added_per_utterance_ms": summary(paired)})
    report["gateway_rss_mb"] = gateway.memory().get("VmHWM")
    return report


def run_direct(worker: WorkerSubprocess, pool: list[Conversation], k: int, seed: int, run_id: str,
               start: float) -> dict[str, Any]:
    """K conversations published at real-time pace from `start` (epoch s); each final's delay from
    its last chunk's send."""
    jobs, by_id = _live_jobs(pool, k, seed, run_id)
    wanted = set(by_id)
    deadline = time.monotonic() + max(call.seconds for call in by_id.values()) + 180.0
    reader = TranscriptReader(worker.bootstrap, worker.transcript_topic, from_beginning=True, codec=AvroCodec())
    finals = RecordCollector(reader, lambda t: t.call_id in wanted and t.is_final, deadline, name="finals").start()
    publisher = CallPublisher(worker.bootstrap, worker.audio_topic)
    plan = ChunkPlan(TELEPHONE_RATE, ENCODING, PLATFORM_CHUNK_MS)
    time.sleep(max(0.0, start - time.time()))
    producing = threading.Thread(target=lambda: (send_calls(publisher, jobs, plan, realtime=True), publisher.flush()),
                                 daemon=True)
    producing.start()
    try:
        wait_until_quiet([finals], producing, deadline)
    finally:
        finals.stop()
    first = first_arrivals(finals.arrivals, lambda t: t.transcript_id)
    delays = {utterance_key(a.transcript): (a.arrived_ms - a.transcript.last_audio_capture_ts_ms) / 1000
              for a in first.values()}
    return {"delay_s": summary(list(delays.values())), "by_utterance": delays,
            "accuracy": conversation_accuracy(by_id, list(first.values()))}


def utterance_key(transcript: Transcript) -> tuple[str, str, int]:
    """The same utterance in either run: the call's place in the run, its stream, its index."""
    return transcript.call_id.rsplit("-", 2)[-2] + transcript.call_id.rsplit("-", 1)[-1], transcript.stream_id, \
        transcript.utterance_index


def run_through_gateway(worker: WorkerSubprocess, gateway: WorkerSubprocess, pool: list[Conversation], k: int,
                        seed: int, run_id: str, start: float) -> dict[str, Any]:
    """The same K conversations, each stream its own WebSocket; each final's delay from the send of
    the frame its last audio came in."""
    jobs, by_id = _live_jobs(pool, k, seed, run_id)
    headers = {"Authorization": f"Token {worker.web_token}"}
    base = f"ws://127.0.0.1:{gateway.web_port}/v1/listen"

    async def all_streams() -> list[tuple[list[float], list[tuple[int, dict]]]]:
        return await asyncio.gather(*(stream_job(base, headers, job, start) for job in jobs))

    arrivals, delays = [], {}
    for sends, finals in asyncio.run(all_streams()):
        for received_ms, message in finals:
            transcript = results_transcript(message)
            stamped = transcript.last_audio_capture_ts_ms + PLATFORM_CHUNK_MS  # when its frame arrived
            sent = min(sends, key=lambda moment: abs(moment - stamped))
            delays[utterance_key(transcript)] = (received_ms - sent) / 1000
            arrivals.append(Arrival(transcript, received_ms))
    return {"delay_s": summary(list(delays.values())), "by_utterance": delays,
            "accuracy": conversation_accuracy(by_id, arrivals)}


async def stream_job(base: str, headers: dict[str, str], job, start: float) -> tuple[list[float], list]:
    """One stream: 20 ms frames sent at real-time pace from `start` (epoch s), then CloseStream; the
    send time of each frame (ms) and each final with its arrival (ms)."""
    plan = job.plan
    per_frame = plan.sample_rate * plan.chunk_ms // 1000
    samples = job.input.samples
    frames = [encode_samples(samples[i:i + per_frame], plan.encoding) for i in range(0, len(samples), per_frame)]
    url = (f"{base}?encoding={WIRE_ENCODINGS[plan.encoding]}&sample_rate={plan.sample_rate}&call_id={job.call_id}"
           f"&stream_id={job.stream_id}")
    sends: list[float] = []
    finals: list[tuple[int, dict]] = []
    async with websockets.connect(url, additional_headers=headers, max_size=None) as socket:
        async def receive() -> None:
            async for text in socket:
                message = json.loads(text)
                if message.get("type") == "Results" and message.get("is_final"):
                    finals.append((int(time.time() * 1000), message))

        receiver = asyncio.create_task(receive())
        for index, frame in enumerate(frames):
            delay = start + index * plan.chunk_ms / 1000 - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sends.append(time.time() * 1000)
            await socket.send(frame)
        await socket.send(json.dumps({"type": "CloseStream"}))
        await asyncio.wait_for(receiver, timeout=120)
    return sends, finals


def results_transcript(message: dict) -> Transcript:
    """A final `Results` message as the Transcript the accuracy counts (text, stream, order, language)."""
    extra, alternative = message["callstt"], message["channel"]["alternatives"][0]
    return Transcript(transcript_id=extra["transcript_id"], call_id=extra["call_id"], stream_id=extra["stream_id"],
                      utterance_index=extra["utterance_index"], text=alternative["transcript"],
                      language=(alternative.get("languages") or [""])[0], language_probability=1.0,
                      start_ms=int(message["start"] * 1000),
                      end_ms=int((message["start"] + message["duration"]) * 1000), model_name="", backend="",
                      avg_logprob=0.0, no_speech_prob=0.0, last_audio_capture_ts_ms=extra["last_audio_capture_ts_ms"],
                      last_audio_received_ts_ms=0, produced_ts_ms=0)


def markdown_lines(gateway: dict[str, Any]) -> list[str]:
    """One row per K: end of speech -> final at the client, straight to Kafka and through the gateway."""
    lines = ["", "## The gateway (WebSocket, Deepgram's live API) against straight to Kafka, live pace", "",
             "| K | finals direct / gateway | direct p50 / p95 (s) | gateway p50 / p95 (s) | added at p95 (ms) | "
             "added per utterance p50 / p95 (ms) | WER en direct / gateway |", "|---|---|---|---|---|---|---|"]
    for row in gateway["live"]:
        direct, through = row["direct"], row["gateway"]
        lines.append(f"| {row['calls']} | {direct['delay_s']['n']} / {through['delay_s']['n']} | "
                     f"{direct['delay_s']['p50']} / {direct['delay_s']['p95']} | "
                     f"{through['delay_s']['p50']} / {through['delay_s']['p95']} | **{row['added_p95_ms']}** | "
                     f"{row['added_per_utterance_ms']['p50']} / {row['added_per_utterance_ms']['p95']} | "
                     f"{direct['accuracy'].get('wer_en')} / {through['accuracy'].get('wer_en')} |")
    lines.append(f"\nFrom the client sending an utterance's last audio to the client receiving its final; "
                 f"{gateway['frame_ms']} ms frames. Target: the gateway adds at most "
                 f"{gateway['target_added_p95_ms']} ms at p95. Gateway peak RSS {gateway.get('gateway_rss_mb')} MB.")
    return lines
