"""POST /transcribe: the old HTTP service's endpoint, answered through the Kafka pipeline.

The uploaded file (multipart field `file` or `audio`, optional `language` field or query
parameter) is decoded, published as a call on the audio topic exactly like any producer
would, and the handler waits for that call's transcripts on the transcript topic. It
knows how many utterances the workers will cut (it runs the same deterministic
endpointing over the same audio), so it answers as soon as the last one arrives; an
utterance the model finds empty is covered by a short settle time. Errors: 400 (no
file), 413 (too large), 415 (not decodable audio), 504 (no answer in time; the call ID
is in the body, for `callstt tail --call ID`).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.web import View

from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.schemas.codec import DecodeError
from callstt.schemas.errors import CallsttError
from callstt.schemas.records import Transcript
from callstt.streams.client.kafka import aiokafka_config, avro_codec, confluent_config
from callstt.streams.client.producer import OWN_CHUNK_PLAN, CallPublisher, iter_chunks, load_audio
from callstt.streams.core.pipeline import cut_utterances
from callstt.streams.core_from_settings import build_pipeline
from callstt.streams.worker.faust_compat import refresh_metadata

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
TIMEOUT_S = 120.0
SETTLE_S = 5.0


class UnreadableAudio(CallsttError, ValueError):
    pass


def decode_upload(data: bytes) -> np.ndarray:
    """Any audio file PyAV reads, as 16 kHz mono float32."""
    with tempfile.NamedTemporaryFile(suffix=".upload") as file:
        file.write(data)
        file.flush()
        try:
            samples = load_audio(file.name, SAMPLE_RATE)
        except Exception as error:  # PyAV raises many error types for bad containers/codecs
            raise UnreadableAudio(f"not a readable audio file ({type(error).__name__})") from error
    if len(samples) == 0:
        raise UnreadableAudio("the file holds no audio samples")
    return samples


def expected_utterances(samples: np.ndarray, call_id: str, settings) -> int:
    """How many utterances the workers will cut from this audio (same chunks, same pipeline core)."""
    chunks = iter_chunks(samples, call_id, "caller", OWN_CHUNK_PLAN, 0)
    return len(cut_utterances(build_pipeline(settings), chunks))


def response_body(call_id: str, transcripts: list[Transcript], duration_s: float, elapsed_s: float) -> dict:
    """The old service's answer shape: text, language, segments, sentences, words (seconds)."""
    def seconds(ms: int) -> float:
        return round(ms / 1000, 3)

    return {
        "call_id": call_id,
        "text": " ".join(t.text for t in transcripts),
        "language": transcripts[0].language if transcripts else None,
        "language_probability": transcripts[0].language_probability if transcripts else None,
        "duration": round(duration_s, 3),
        "processing_time": round(elapsed_s, 3),
        "model": transcripts[0].model_name if transcripts else None,
        "backend": transcripts[0].backend if transcripts else None,
        "segments": [{"id": t.utterance_index, "start": seconds(t.start_ms), "end": seconds(t.end_ms),
                      "text": t.text, "avg_logprob": t.avg_logprob, "no_speech_prob": t.no_speech_prob}
                     for t in transcripts],
        "sentences": [{"text": s.text, "start": seconds(s.start_ms), "end": seconds(s.end_ms)}
                      for t in transcripts for s in t.sentences],
        "words": [{"word": w.text, "start": seconds(w.start_ms), "end": seconds(w.end_ms),
                   "probability": w.probability} for t in transcripts for w in t.words],
    }


class TranscribeView(View):
    status = None  # the worker's WorkerStatus, bound by for_status()

    @classmethod
    def for_status(cls, status) -> type["TranscribeView"]:
        return type("Transcribe", (cls,), {"status": status})

    async def post(self, request):
        settings = self.status.settings
        language = request.query.get("language") or None
        data = None
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError, KeyError):
            return self.json({"error": "send the audio as multipart/form-data, field 'file'"}, status=400)
        async for part in reader:
            if part.name in ("file", "audio"):
                data = bytearray()
                while chunk := await part.read_chunk(1 << 16):
                    data.extend(chunk)
                    if len(data) > MAX_UPLOAD_BYTES:
                        return self.json({"error": f"file larger than {MAX_UPLOAD_BYTES} bytes"}, status=413)
            elif part.name == "language":
                language = (await part.text()).strip() or language
        if not data:
            return self.json({"error": "no audio file in field 'file'"}, status=400)
        loop = asyncio.get_running_loop()
        try:
            samples = await loop.run_in_executor(None, decode_upload, bytes(data))
        except UnreadableAudio as error:
            return self.json({"error": str(error)}, status=415)

        call_id = f"http-{uuid.uuid4().hex[:12]}"
        started = time.monotonic()
        expected = await loop.run_in_executor(None, expected_utterances, samples, call_id, settings)
        consumer = await self.transcript_consumer()
        try:
            await loop.run_in_executor(None, self.publish, samples, call_id, language)
            transcripts = await self.wait_for(consumer, call_id, expected, started)
        finally:
            await consumer.stop()
        if transcripts is None:
            return self.json({"error": f"no answer within {TIMEOUT_S:.0f}s; the call is still in the pipeline: "
                                       f"callstt tail --call {call_id}", "call_id": call_id}, status=504)
        return self.json(response_body(call_id, transcripts, len(samples) / SAMPLE_RATE, time.monotonic() - started))

    def publish(self, samples: np.ndarray, call_id: str, language: str | None) -> None:
        settings = self.status.settings
        with CallPublisher(settings.kafka_bootstrap_servers, settings.audio_topic,
                           extra_config=confluent_config(settings)) as publisher:
            plan = OWN_CHUNK_PLAN
            publisher.publish_call(samples, call_id, "caller", plan.sample_rate, plan.encoding, plan.chunk_ms, language)

    async def transcript_consumer(self) -> AIOKafkaConsumer:
        """A group-less consumer positioned at the end of every transcript partition (before publishing)."""
        settings = self.status.settings
        consumer = AIOKafkaConsumer(**aiokafka_config(settings), enable_auto_commit=False)
        await consumer.start()
        partitions = consumer.partitions_for_topic(settings.transcript_topic) or set()
        if not partitions:
            await refresh_metadata(consumer)
            partitions = consumer.partitions_for_topic(settings.transcript_topic) or {0}
        assigned = [TopicPartition(settings.transcript_topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)
        for tp in assigned:
            await consumer.position(tp)
        return consumer

    async def wait_for(self, consumer: AIOKafkaConsumer, call_id: str, expected: int,
                       started: float) -> list[Transcript] | None:
        codec = avro_codec(self.status.settings)
        found: dict[int, Transcript] = {}
        last_news = time.monotonic()
        while time.monotonic() - started < TIMEOUT_S:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    try:
                        transcript = codec.decode_transcript(record.value)
                    except DecodeError:
                        continue
                    if transcript.call_id == call_id:
                        found[transcript.utterance_index] = transcript
                        last_news = time.monotonic()
            if expected == 0 or (found and max(found) >= expected - 1):
                break
            if found and time.monotonic() - last_news > SETTLE_S:
                break
        else:
            return [found[i] for i in sorted(found)] if found else None
        return [found[i] for i in sorted(found)]
