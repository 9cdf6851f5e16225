"""Simulated calls for `callstt publish`: inputs -> call jobs -> interleaved AudioChunk events.

The library under the `publish` command, usable without it (no typer here)::

    inputs = load_inputs(["recordings/"], say=["Can you hear me clearly now?"], sample_rate=8000)
    jobs = plan_calls(inputs, calls=3, call_id="demo")           # demo-1, demo-2, demo-3
    results = publish(bootstrap, "callstt.audio", jobs, ChunkPlan(8000, "MULAW", 20), realtime=True)

Each input (an audio file, or a sentence synthesized with espeak-ng) is one call of one
stream. Several calls are sent *interleaved* from one thread, one chunk of every live
call per step, so the broker sees them as concurrent calls; with `realtime` each step is
paced to the chunk duration. `publish` returns once the broker acknowledged every chunk
(acks=all) and raises `PublishError` if any chunk was refused or the broker stopped
answering.

It also holds the small Kafka client helpers the CLI commands share: `ClientErrors`
keeps librdkafka's own log lines off stderr (the last error goes into our message
instead) and `check_topic` fails fast, with one clear line, when the broker cannot be
reached or the topic does not exist.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, KafkaException

from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.schemas.codec import AvroCodec
from callstt.schemas.errors import CallsttError
from callstt.streams.client.kafka import principal
from callstt.streams.client.producer import CallPublisher, ChunkPlan, iter_chunks, load_audio

# What a directory argument contributes: the files whose suffix is one of these (PyAV reads them all).
AUDIO_SUFFIXES = frozenset({
    ".wav", ".wave", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".webm",
    ".mka", ".aif", ".aiff", ".au", ".amr", ".gsm", ".caf", ".mp4",
})
# The rates `callstt publish` may send (a producer's choice; the worker resamples to models.audio.decoding.SAMPLE_RATE).
SAMPLE_RATES = (8000, 16000, 48000)


class InputError(CallsttError, ValueError):
    """An input cannot be used (missing, unreadable, no audio); the message is one line."""


class PublishError(CallsttError, RuntimeError):
    """The broker could not be reached, or did not acknowledge every chunk; the message is one line."""


# --- Kafka client helpers (shared with streams.client.tailing and the CLI) -------------------------

_quiet_log = logging.getLogger("callstt.kafka-client")
_quiet_log.addHandler(logging.NullHandler())
_quiet_log.propagate = False


class ClientErrors:
    """Collects a librdkafka client's errors instead of letting it print them.

    `config()` is the client configuration that routes the client's log lines to a silent
    logger and its error events here, so `describe()` can say why a broker was unreachable.
    """

    def __init__(self) -> None:
        self.last: KafkaError | None = None
        self.last_transport: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        self.last = error
        if error.code() in (KafkaError._TRANSPORT, KafkaError._RESOLVE):
            self.last_transport = error

    def config(self) -> dict[str, Any]:
        return {"error_cb": self, "logger": _quiet_log}

    def describe(self) -> str:
        """The most telling error seen so far (a connection failure beats 'all brokers down')."""
        error = self.last_transport or self.last
        return error.str() if error is not None else ""


def check_topic(client: Any, bootstrap: str, topic: str | None, timeout: float,
                errors: ClientErrors | None = None, operation: str = "Write",
                client_config: dict[str, Any] | None = None) -> None:
    """Raise `PublishError` unless the broker answers within `timeout` s and `topic` exists.

    `client` is any confluent_kafka client (Producer, Consumer, AdminClient); `topic`
    None only checks the broker. A topic the broker's ACLs hide from the client is said so,
    naming the principal (from `client_config`) and the `operation` it was about to do.
    """
    try:
        metadata = client.list_topics(topic, timeout=timeout)
    except KafkaException as error:
        if errors is not None and hasattr(client, "poll"):
            client.poll(0)  # serve the error events queued meanwhile (the callback runs only in poll)
        why = (errors.describe() if errors else "") or error.args[0].str()
        # A plaintext client at a TLS listener sees only "brokers are down": say what else to check.
        raise PublishError(f"cannot reach Kafka at {bootstrap} within {timeout:g}s: {why} (check the address, "
                           "and CALLSTT_KAFKA_SECURITY_PROTOCOL if the brokers expect TLS or SASL)") from None
    if topic is None:
        return
    found = metadata.topics.get(topic)
    if found is None or found.error is not None and found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        raise PublishError(f"topic {topic!r} does not exist on {bootstrap} "
                           "(start a worker or run `callstt topics create`)")
    if found.error is not None and found.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        raise PublishError(f"{principal(client_config or {})} may not {operation} topic {topic!r} on {bootstrap}: "
                           "denied by the broker's ACLs (`callstt acls` shows each role's)")
    if found.error is not None:
        raise PublishError(f"topic {topic!r} on {bootstrap}: {found.error.str()}")


# --- inputs -----------------------------------------------------------------------------------

def list_inputs(paths: Iterable[Path | str]) -> list[Path]:
    """The audio files the arguments name: files as given, directories as their audio files, sorted.

    A directory contributes the files directly in it (not its subdirectories) whose suffix is
    in AUDIO_SUFFIXES, hidden files excluded. A missing path, or a directory without audio
    files, is an `InputError`.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(entry for entry in path.iterdir()
                           if entry.is_file() and not entry.name.startswith(".")
                           and entry.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise InputError(f"no audio files in directory {path}")
            files += found
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise InputError(f"not a file or directory: {path}")
        else:
            raise InputError(f"no such file or directory: {path}")
    return files


@dataclass(frozen=True)
class CallInput:
    """The audio of one call: mono float32 samples at `sample_rate`, and where they came from."""

    name: str
    samples: np.ndarray = field(repr=False)
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def load_inputs(paths: Iterable[Path | str] = (), say: Iterable[str] = (), language: str = "en",
                sample_rate: int = SAMPLE_RATE) -> list[CallInput]:
    """Files (and directories, see `list_inputs`) first, then each `say` text spoken by espeak-ng in `language`.

    Every input is decoded/resampled to mono `sample_rate`; failures are `InputError`.
    """
    inputs: list[CallInput] = []
    for path in list_inputs(paths):
        try:
            samples = load_audio(path, sample_rate)
        except Exception as error:  # PyAV raises many kinds; all mean the same to the caller
            detail = getattr(error, "strerror", None) or " ".join(str(error).split()) or type(error).__name__
            raise InputError(f"cannot read audio from {path}: {detail}") from None
        if len(samples) == 0:
            raise InputError(f"no audio in {path}")
        inputs.append(CallInput(path.name, samples, sample_rate))
    for text in say:
        if not text.strip():
            raise InputError("--say needs some text")
        # espeak-ng only for --say: the client imports no model code otherwise
        from callstt.models.voices.synth import SynthesisError, synthesize

        try:
            samples = synthesize(text, language, sample_rate=sample_rate)
        except SynthesisError as error:
            raise InputError(str(error)) from None
        inputs.append(CallInput(f"say:{text}", samples, sample_rate))
    return inputs


# --- calls ----------------------------------------------------------------------------------

def new_call_id() -> str:
    """A fresh call id, `call-` and 8 hex digits."""
    return f"call-{uuid.uuid4().hex[:8]}"


def call_ids(count: int, base: str | None = None) -> list[str]:
    """`count` call ids: `base` itself for one call, `base-1` ... `base-N` for several."""
    if count < 1:
        raise ValueError("count must be at least 1")
    base = base or new_call_id()
    return [base] if count == 1 else [f"{base}-{index}" for index in range(1, count + 1)]


@dataclass(frozen=True)
class CallJob:
    """One simulated call: one stream of `input`'s audio under `call_id`."""

    call_id: str
    stream_id: str
    input: CallInput
    language: str | None = None  # the chunks' language hint; None = let the worker detect it
    plan: ChunkPlan | None = None  # this stream's own rate and encoding (None: the plan `send_calls` is given)

    def chunk_count(self, plan: ChunkPlan) -> int:
        """How many chunks `iter_chunks` cuts this call into."""
        per_chunk = max(1, plan.sample_rate * plan.chunk_ms // 1000)
        return max(1, -(-len(self.input.samples) // per_chunk))


def plan_calls(inputs: Sequence[CallInput], calls: int | None = None, call_id: str | None = None,
               stream_id: str = "caller", language: str | None = None) -> list[CallJob]:
    """One job per input, or `calls` jobs cycling over the inputs; ids from `call_ids(n, call_id)`."""
    if not inputs:
        raise InputError("nothing to publish: give audio files or directories, or --say TEXT")
    count = calls or len(inputs)
    ids = call_ids(count, call_id)
    return [CallJob(ids[index], stream_id, source, language)
            for index, source in zip(range(count), itertools.cycle(inputs))]


@dataclass
class CallResult:
    """What was published for one call."""

    call_id: str
    stream_id: str
    source: str
    seconds: float
    chunks: int = 0
    acknowledged: int = 0
    failed: int = 0
    first_error: str = ""


def new_results(jobs: Sequence[CallJob]) -> list[CallResult]:
    """Empty results, one per job."""
    return [CallResult(job.call_id, job.stream_id, job.input.name, job.input.seconds) for job in jobs]


class DeliveryTracker:
    """The producer's delivery callback: counts acknowledged and refused chunks per call id."""

    def __init__(self, results: dict[str, CallResult]) -> None:
        self.results = results
        self.acknowledged = 0
        self.failed = 0

    def __call__(self, error: KafkaError | None, message: Any) -> None:
        result = self.results.get((message.key() or b"").decode(errors="replace"))
        if error is None:
            self.acknowledged += 1
            if result:
                result.acknowledged += 1
            return
        self.failed += 1
        if result:
            result.failed += 1
            result.first_error = result.first_error or error.str()


def send_calls(publisher: CallPublisher, jobs: Sequence[CallJob], plan: ChunkPlan, realtime: bool = False,
               on_chunk: Callable[[CallJob], None] | None = None, start_ms: int | None = None,
               results: list[CallResult] | None = None,
               sleep: Callable[[float], None] = time.sleep) -> list[CallResult]:
    """Send the jobs' chunks interleaved (step i sends chunk i of every call that still has one).

    All calls start at `start_ms` (default: now). With `realtime`, step i is sent no earlier
    than i chunk durations after the start. Returns one result per job (chunks sent), the
    given `results` (one per job, counted into) or new ones; it does not wait for
    acknowledgements (see `publish`).
    """
    for job in jobs:
        own = job.plan or plan
        if job.input.sample_rate != own.sample_rate:
            raise ValueError(f"{job.input.name} is at {job.input.sample_rate} Hz, the plan at {own.sample_rate} Hz")
        if own.chunk_ms != plan.chunk_ms:
            raise ValueError("every stream sent together needs the same chunk length (steps are chunks)")
    start_ms = int(time.time() * 1000) if start_ms is None else start_ms
    results = new_results(jobs) if results is None else results
    streams = [(job, result, iter_chunks(job.input.samples, job.call_id, job.stream_id, job.plan or plan, start_ms,
                                         job.language))
               for job, result in zip(jobs, results)]
    started = time.monotonic()
    for step in itertools.count():
        batch = [(job, result, chunks, next(chunks, None)) for job, result, chunks in streams]
        streams = [(job, result, chunks) for job, result, chunks, chunk in batch if chunk is not None]
        if not streams:
            break
        if realtime:
            delay = started + step * plan.chunk_ms / 1000 - time.monotonic()
            if delay > 0:
                sleep(delay)
        for job, result, _, chunk in batch:
            if chunk is None:
                continue
            publisher.send(chunk)
            result.chunks += 1
            if on_chunk:
                on_chunk(job)
    return results


def wait_acknowledged(publisher: CallPublisher, stall_timeout: float) -> None:
    """Flush until nothing is in flight; `PublishError` if `stall_timeout` s pass without progress."""
    remaining = publisher.producer.flush(0)
    progress_at = time.monotonic()
    while remaining:
        now_remaining = publisher.producer.flush(min(1.0, stall_timeout))
        if now_remaining < remaining:
            progress_at = time.monotonic()
        remaining = now_remaining
        if remaining and time.monotonic() - progress_at >= stall_timeout:
            raise PublishError(f"{remaining} audio chunks not acknowledged: the broker stopped answering "
                               f"for {stall_timeout:g}s")


def publish(bootstrap: str, topic: str, jobs: Sequence[CallJob], plan: ChunkPlan, realtime: bool = False,
            timeout: float = 10.0, codec: AvroCodec | None = None,
            on_chunk: Callable[[CallJob], None] | None = None,
            client_config: dict[str, Any] | None = None) -> list[CallResult]:
    """Publish the calls to `topic` and wait until the broker acknowledged every chunk.

    `timeout`: how long the broker may stay silent (first contact, and while waiting for
    acknowledgements). Raises `PublishError` (broker unreachable, topic missing, chunks refused
    or unacknowledged).
    """
    errors = ClientErrors()
    results = new_results(jobs)
    tracker = DeliveryTracker({result.call_id: result for result in results})
    publisher = CallPublisher(bootstrap, topic, codec=codec, extra_config={
        **(client_config or {}),  # security settings (TLS/SASL)
        **errors.config(),
        "on_delivery": tracker,
        # A missing topic must be an error, not auto-created with the broker's default partitions.
        "allow.auto.create.topics": False,
    })
    check_topic(publisher.producer, bootstrap, topic, timeout, errors, "Write", client_config)
    send_calls(publisher, jobs, plan, realtime, on_chunk, results=results)
    wait_acknowledged(publisher, timeout)
    failed = [result for result in results if result.failed]
    if failed:
        total = sum(result.failed for result in failed)
        raise PublishError(f"the broker refused {total} audio chunks of {len(failed)} call(s): {failed[0].first_error}")
    return results
