"""The pipeline core: from audio-chunk records to Transcript events and the state changes to keep,
over any key-value store, with no Kafka or Faust in sight.

Every path that turns audio into transcripts drives this one core: the worker's Faust agent
(streams/worker/app.py), `callstt replay` (streams/replay.py), `POST /transcribe`'s count of
the utterances to wait for (streams/worker/http_transcribe.py) and `callstt bench`. A batch
of records goes through it like this:

    pipeline = build_pipeline(settings)                  # streams/core_from_settings.py
    batch = pipeline.batch(read=store.get)               # reads see the batch's own changes
    for record in records:
        result = batch.accept_record(record.value, now_ms, owner=record)
        if isinstance(result, Rejected): ...             # to the dead-letter topic, reason kept
    transcribed = batch.transcribe(router)               # in the model thread: every utterance
    ...publish each t.transcript, await the acks...      # the batch finished, in one model call
    for key, value, owner in batch.changes(partition_of):  # only then: value None = delete
        ...write the store...

Steps inside (file per step): Avro decode (schemas/codec.py) -> sequencing, audio decode,
VAD and endpointing per stream (streams/core/assembly.py) through the batch's overlay of the
store (streams/core/batch.py) -> the call's options (streams/core/call_options.py: its
`CallSettings` record, kept in the store by `accept_call_settings`, over the worker's
defaults) -> language choice and the model call in the configured inference mode, with the
call's vocabulary (models/asr/batching.py) -> the guard against invented text (models/text/guard.py) -> redaction and Transcript records
(streams/core/redaction.py, streams/core/transcripts.py).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from callstt.models.asr.batching import PendingUtterance, choose_and_transcribe, split_lanes
from callstt.models.asr.routing import LanguageChoice, ModelRouter
from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.audio.endpointing import EndpointState
from callstt.models.audio.errors import BadChunk
from callstt.models.text.guard import GuardConfig, judge
from callstt.schemas.codec import AvroCodec, DecodeError
from callstt.schemas.records import AudioChunk, CallSettings, Transcript
from callstt.streams.core import interims
from callstt.streams.core.assembly import AssemblyConfig, Outcome, StreamAssembler, StreamState, Utterance, state_key
from callstt.streams.core.batch import TableBatch
from callstt.streams.core.call_options import CallDefaults, StreamOptions, resolve, settings_expired, settings_key
from callstt.streams.core.interims import Interims, text_of
from callstt.streams.core.speculation import Claim, Speculations, worth_running
from callstt.streams.core.stages import FinalStages, ModelCall, StageLog
from callstt.streams.core.transcripts import build_transcript, interim_result, redact_result

log = logging.getLogger("callstt.pipeline")

Read = Callable[[str], "bytes | None"]


@dataclass(frozen=True)
class PipelineConfig:
    """What the core needs to know (streams/core_from_settings.py builds it from the settings)."""

    assembly: AssemblyConfig = field(default_factory=AssemblyConfig)
    inference_mode: str = "packed"
    inference_batch_size: int = 8
    pack_window_s: float = 28.0
    pack_gap_s: float = 0.8
    min_window_s: float = 30.0
    model_version: str = "base-int8"
    idle_flush_ms: float = 5000.0
    defaults: CallDefaults = field(default_factory=CallDefaults)  # what a call without settings gets
    guard: GuardConfig = field(default_factory=GuardConfig)  # what counts as invented text (models/text/guard.py)
    call_settings_topic: str = "callstt.call-settings"  # the registry subject of the settings kept
    # End of speech -> transcript target: a final past it means the worker is behind, and
    # speculative work waits (streams/core/speculation.py).
    latency_budget_ms: int = 1600
    model_lanes: int = 1  # model calls at once, each with its own streams (the backend's num_workers)
    partial_window_s: float = 10.0  # the shortest encoder window of an interim (streams/core/interims.py)

    def with_overrides(self, **overrides: Any) -> "PipelineConfig":
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})


@dataclass(frozen=True)
class Rejected:
    """A record the pipeline cannot use: it goes to the dead-letter topic with `reason` as its header."""

    reason: str  # stable snake_case code, one of REASONS
    detail: str  # for people

    # Every reason a record is rejected for: the chunk's (models.audio.errors.BadChunk), the frame's
    # (schemas.codec.DecodeError), a chunk after its stream ended (streams/core/assembly.py), a
    # call-settings record's, and a failure of ours. The worker exports each one's counter from
    # the start, at 0: a reason's first burst then counts as an increase to Prometheus.
    REASONS: ClassVar[frozenset[str]] = BadChunk.REASONS | DecodeError.REASONS | frozenset({
        "after_end_of_stream", "missing_key", "call_id_mismatch", "bad_call_settings", "processing_error"})


@dataclass(frozen=True)
class Transcribed:
    """One utterance after the model: its transcript (None when nothing was said), and how."""

    utterance: Utterance
    transcript: Transcript | None
    choice: LanguageChoice
    model_seconds: float  # the model call's time shared out by audio length
    dropped: str | None = None  # why the guard published nothing ("no_speech", "loop", ...: models/text/guard.py)
    stages: FinalStages | None = None  # a final's way so far (streams/core/stages.py); the publisher adds the rest


def now_ms() -> int:
    return int(time.time() * 1000)


def final_stages(utterance: Utterance, claim: Claim, started_ms: int, ended_ms: int) -> FinalStages:
    """A final's stages up to its model result: its speculation's model call when that was used,
    else the model call of [started_ms, ended_ms]."""
    foreseen = claim.foreseen
    return FinalStages(
        utterance.call_id, utterance.stream_id, utterance.index, speech_end_ms=utterance.speech_end_capture_ms,
        cut_ms=utterance.last_received_ts_ms, speculation=claim.outcome,
        speculative_cut_ms=claim.speculative_cut_ms,
        model_started_ms=foreseen.model_started_ms if foreseen else started_ms,
        model_ended_ms=foreseen.model_ended_ms if foreseen else ended_ms)


class Pipeline:
    """The data path's logic, shared by every batch; one per worker (or replay, or bench)."""

    def __init__(self, config: PipelineConfig | None = None, codec: AvroCodec | None = None,
                 assembler: StreamAssembler | None = None) -> None:
        self.config = config or PipelineConfig()
        self.codec = codec or AvroCodec()
        self.assembler = assembler or StreamAssembler(self.config.assembly)
        # Results of speculative cuts waiting for their final cut (touched in the model thread only).
        self.speculations = Speculations()
        # The recent finals' stages and model calls (streams/core/stages.py: the worker's /stages).
        self.stages = StageLog()
        # Hypotheses of open utterances for their interims (the model thread and the interim lane: it locks).
        self.interims = Interims()
        # Interim cuts a batch left for the next one (with their call's settings), one per stream.
        self.deferred_interims: list[tuple[StreamState, Utterance, CallSettings | None]] = []
        self._lane_pool: ThreadPoolExecutor | None = None  # the model calls beside the model thread's own

    def batch(self, read: Read) -> "PipelineBatch":
        return PipelineBatch(self, read)

    def interims_to_run(self, batch: "PipelineBatch", waiting: "PipelineBatch | None",
                        now_ms: int, lane_busy: bool = False) -> tuple[list[tuple[StreamState, Utterance]], int]:
        """The interim cuts to transcribe now, after `batch`'s finals: its own and those earlier
        batches deferred, unless a final or a speculative cut waits in the `waiting` (open) batch
        (a speaker has stopped: that model call comes first), an interim call still runs
        (`lane_busy`) or a newer interim of their stream waits (streams/core/interims.py
        `choose`); at most one model call of them.
        Those still worth it later are deferred to the next batch. Returns them and how many were
        skipped (superseded, coalesced or too old)."""
        cuts, superseded = batch.interims_with(self.deferred_interims)
        self.deferred_interims = []
        if not cuts:
            return [], superseded
        choice = interims.choose(
            cuts, finals_waiting=bool(waiting and (waiting.ready or waiting.speculative)),
            newer={(u.call_id, u.stream_id) for _, u in (waiting.interims if waiting else [])},
            now_ms=now_ms, budget_ms=self.config.latency_budget_ms, room=self.config.inference_batch_size,
            lane_busy=lane_busy)
        self.deferred_interims = batch.with_call_settings(choice.deferred)
        return choice.run, superseded + choice.skipped

    def decode(self, value: bytes | None) -> AudioChunk | Rejected:
        """An audio-chunk record's value (Avro, Confluent framing), or why it cannot be read."""
        try:
            return self.codec.decode_chunk(value)
        except DecodeError as error:
            return Rejected(error.reason, str(error))

    def decode_call_settings(self, call_id: str, value: bytes) -> CallSettings | Rejected:
        """A call-settings record's value, checked against the worker's defaults, or why it cannot be used."""
        try:
            settings = self.codec.decode_call_settings(value)
        except DecodeError as error:
            return Rejected(error.reason, str(error))
        if settings.call_id != call_id:
            return Rejected("call_id_mismatch", f"record for call {settings.call_id!r} under key {call_id!r}")
        try:
            for stream in (None, *settings.streams):
                resolve(settings, stream.stream_id if stream else "", self.config.defaults)
        except ValueError as error:
            return Rejected("bad_call_settings", f"call {call_id}: {error}")
        return settings

    def options(self, call_settings: CallSettings | None, stream_id: str) -> StreamOptions:
        return resolve(call_settings, stream_id, self.config.defaults)

    def transcribe(self, router: ModelRouter, ready: Sequence[tuple[StreamState, Utterance]],
                   latest: Callable[[Utterance], StreamState | None], mode: str | None = None,
                   call_settings: Callable[[str], CallSettings | None] = lambda call_id: None,
                   speculative: Sequence[tuple[StreamState, Utterance]] = ()) -> list[Transcribed]:
        """Choose each utterance's language and run them all through the model in one go
        (`mode`, default the configured inference mode), each with its call's options
        (`call_settings(call_id)`: the call's record, None for the worker's defaults); the
        stream's language evidence after it (models/asr/language_id.py) is written to
        `latest(utterance)`, the stream's state as the caller will keep it. A final utterance
        that a speculation foresaw takes its result (streams/core/speculation.py); the
        `speculative` ones run beside the rest when the model has room, and are kept, not
        published. Run it in the model thread. Results for `ready`, in its order."""
        claims = [self.speculations.take(utterance) for _, utterance in ready]
        to_run = [item for item, claim in zip(ready, claims) if claim.foreseen is None]
        started_ms = now_ms()
        if speculative and not worth_running([u for _, u in speculative], [u for _, u in to_run], started_ms,
                                             self.config.latency_budget_ms, self.config.inference_batch_size):
            self.speculations.skipped([u for _, u in speculative])
            speculative = ()
        decisions = iter(self._decide(router, [*to_run, *speculative], call_settings, mode))
        ended_ms = now_ms()
        if to_run or speculative:
            self.stages.add_model_call(ModelCall("finals", started_ms, ended_ms, len(to_run) + len(speculative)))
        results = []
        for (_, utterance), claim in zip(ready, claims):
            # Closed before the final is built: an interim still running in the interim lane is
            # then either built before this final or dropped (streams/core/interims.py).
            self.interims.close(utterance)
            stages = final_stages(utterance, claim, started_ms, ended_ms)
            decided = claim.decided or next(decisions)
            results.append(replace(self._transcribed(utterance, decided, call_settings, latest), stages=stages))
        for _, utterance in speculative:
            self.speculations.keep(utterance, next(decisions), started_ms, ended_ms)
        return results

    def transcribe_interims(self, router: ModelRouter, interims: Sequence[tuple[StreamState, Utterance]],
                            call_settings: Callable[[str], CallSettings | None] = lambda call_id: None
                            ) -> list[Transcribed]:
        """Interim cuts of open utterances through the model in one call (batched, each in a window of
        at least `partial_window_s`), the guard and redaction, to interim Transcripts whose words
        keep the utterance's stable prefix (streams/core/interims.py). The streams' language
        evidence is left as it was: only finals move it. Run it in the interim lane (one model
        call: the other lanes stay free for finals)."""
        started_ms = now_ms()
        decisions = self._decide(router, interims, call_settings, "batched", self.config.partial_window_s, lanes=1)
        if interims:
            self.stages.add_model_call(ModelCall("interims", started_ms, now_ms(), len(interims)))
        results = []
        for (_, utterance), decided in zip(interims, decisions):
            transcribed = self._transcribed(utterance, decided, call_settings, lambda u: None, interim=True)
            if transcribed.transcript is not None:
                hypothesis = self.interims.revise(utterance, transcribed.transcript.words)
                if hypothesis is None:
                    transcribed = replace(transcribed, transcript=None, dropped="stale")
                else:
                    transcribed = replace(transcribed, transcript=replace(
                        transcribed.transcript, is_final=False, revision=hypothesis.revision,
                        text=text_of(hypothesis.words), words=hypothesis.words, sentences=(),
                        stable_word_count=hypothesis.stable, stable_text=text_of(hypothesis.words[:hypothesis.stable])))
            results.append(transcribed)
        return results

    def _decide(self, router: ModelRouter, items: Sequence[tuple[StreamState, Utterance]],
                call_settings: Callable[[str], CallSettings | None], mode: str | None,
                min_window_s: float | None = None, lanes: int | None = None) -> list:
        """The model call (`lanes` of them at once, default CALLSTT_MODEL_LANES): every item's
        language chosen and its words decoded (models.asr.batching.Decided)."""
        if not items:
            return []
        pending = []
        for state, u in items:
            option = self.options(call_settings(u.call_id), u.stream_id)
            pending.append(PendingUtterance(stream=f"{u.call_id}|{u.stream_id}", audio=u.audio, hint=u.hint,
                                            evidence=state.evidence, languages=option.languages,
                                            vocabulary=option.vocabulary))
        lanes = split_lanes([item.stream for item in pending], [len(item.audio) for item in pending],
                            lanes or self.config.model_lanes)
        if len(lanes) == 1:
            return self._choose(router, pending, mode, min_window_s)
        # Several model calls at once, each with its own streams (the backend runs that many: its
        # num_workers); this thread runs the first lane itself.
        if self._lane_pool is None:
            self._lane_pool = ThreadPoolExecutor(self.config.model_lanes - 1, thread_name_prefix="callstt-lane")
        others = [self._lane_pool.submit(self._choose, router, [pending[i] for i in lane], mode, min_window_s)
                  for lane in lanes[1:]]
        decided: list = [None] * len(pending)
        outputs = [self._choose(router, [pending[i] for i in lanes[0]], mode, min_window_s)] + \
            [other.result() for other in others]
        for lane, output in zip(lanes, outputs):
            for index, one in zip(lane, output):
                decided[index] = one
        return decided

    def _choose(self, router: ModelRouter, pending: Sequence[PendingUtterance], mode: str | None,
                min_window_s: float | None = None) -> list:
        config = self.config
        return choose_and_transcribe(router, pending, mode or config.inference_mode, config.inference_batch_size,
                                     config.pack_window_s, config.pack_gap_s, min_window_s or config.min_window_s)

    def _transcribed(self, utterance: Utterance, decided, call_settings: Callable[[str], CallSettings | None],
                     latest: Callable[[Utterance], StreamState | None], interim: bool = False) -> Transcribed:
        """A decided utterance through the guard and redaction to its Transcript (None: dropped);
        an `interim` shows only the words before any that redaction could still remove."""
        state = latest(utterance)
        if state is not None:
            state.language = decided.evidence.to_dict()
        transcript = None
        dropped = judge(decided.result, utterance.audio, self.config.guard)  # invented text never leaves
        if dropped is None:
            # Redaction before anything leaves the worker: the values never reach a record.
            option = self.options(call_settings(utterance.call_id), utterance.stream_id)
            if interim:
                result, redactions = interim_result(decided.result, option.redaction), {}
            else:
                result, redactions = redact_result(decided.result, option.redaction)
            transcript = build_transcript(utterance, result, decided.choice, self.config.model_version, redactions)
        return Transcribed(utterance, transcript, decided.choice, decided.model_seconds, dropped)


class PipelineBatch:
    """One batch of records over a key-value store: accept them in order, transcribe what they
    finished, then hand back the store changes. Nothing is written before `changes()`."""

    def __init__(self, pipeline: Pipeline, read: Read) -> None:
        self.pipeline = pipeline
        self.table = TableBatch(read=read)
        # The settings of each call with an utterance in this batch, read when the utterance is cut
        # (in the caller's thread, with its record bound: the model thread never reads the store).
        self._call_settings: dict[str, CallSettings | None] = {}
        # Where the time went (seconds), for the worker's stage metrics.
        self.stage_seconds: dict[str, float] = defaultdict(float)
        # What happened to speculative cuts in this batch (streams/core/speculation.py), for metrics.
        self.speculation_counts: Counter = Counter()
        # What `transcribe` left for after the finals whose words were ready are out: (finals, speculative cuts).
        self.left: tuple[list, list] | None = None

    @property
    def outcomes(self) -> list[tuple[Any, Outcome]]:
        return self.table.outcomes

    def state(self, call_id: str, stream_id: str) -> StreamState | None:
        return self.table.state(call_id, stream_id)

    def accept_record(self, value: bytes | None, received_ms: int, owner: Any, offset: int = -1) -> Outcome | Rejected:
        """An audio-chunk record through its stream (`owner`: what the changes belong to, e.g. the
        event; `offset`: the record's in the audio topic, -1 when it has none)."""
        started = time.perf_counter()
        chunk = self.pipeline.decode(value)
        self.stage_seconds["avro_decode"] += time.perf_counter() - started
        if isinstance(chunk, Rejected):
            return chunk
        return self.accept_chunk(chunk, received_ms, owner, offset)

    def accept_chunk(self, chunk: AudioChunk, received_ms: int, owner: Any, offset: int = -1) -> Outcome | Rejected:
        assembler = self.pipeline.assembler
        started = time.perf_counter()
        try:
            state = self.table.state(chunk.call_id, chunk.stream_id) or assembler.new_state(chunk.call_id,
                                                                                           chunk.stream_id)
            outcome = assembler.accept(state, chunk, received_ms, self.table.read, offset)
        except BadChunk as error:
            return Rejected(error.reason, f"call {chunk.call_id} stream {chunk.stream_id}: {error}")
        except Exception as error:  # a bug on odd input must not stop the partition: park the record
            log.exception("processing failed for call %s stream %s", chunk.call_id, chunk.stream_id)
            return Rejected("processing_error", f"{type(error).__name__}: {error}")
        self.stage_seconds["audio_decode"] += outcome.decode_seconds
        self.stage_seconds["vad"] += outcome.vad_seconds
        self.stage_seconds["assembly"] += max(
            time.perf_counter() - started - outcome.decode_seconds - outcome.vad_seconds, 0.0)
        return self._record(outcome, owner)

    def accept_call_settings(self, call_id: str, value: bytes | None, owner: Any,
                             received_ms: int = 0) -> CallSettings | Rejected | None:
        """A record of the call-settings topic (key = call id): kept in the store for the call's
        later utterances; a tombstone (None) forgets the call's settings. A record without its
        `updated_ts_ms` is stamped with `received_ms`, the age `expire_call_settings` reads."""
        if value is None:
            self.table.put(settings_key(call_id), None, owner)
            self._call_settings[call_id] = None
            return None
        settings = self.pipeline.decode_call_settings(call_id, value)
        if not isinstance(settings, Rejected):
            if not settings.updated_ts_ms and received_ms:
                settings = replace(settings, updated_ts_ms=received_ms)
                value = self.pipeline.codec.encode_call_settings(settings, self.pipeline.config.call_settings_topic)
            self.table.put(settings_key(call_id), value, owner)
            self._call_settings[call_id] = settings  # from here on, in this batch too
        return settings

    def expire_call_settings(self, call_id: str, now_ms: int, ttl_ms: int, owner: Any) -> bool:
        """Forget the call's settings when they are older than `ttl_ms` (re-checked here, in the
        call's own partition: newer settings may have arrived since the request)."""
        settings = self.call_settings(call_id)
        if settings is None or not settings_expired(settings, now_ms, ttl_ms):
            return False
        self.accept_call_settings(call_id, None, owner)
        return True

    def call_settings(self, call_id: str) -> CallSettings | None:
        """The call's settings as this batch sees them (None: none, the worker's defaults apply)."""
        raw = self.table.read(settings_key(call_id))
        return self.pipeline.codec.decode_call_settings(raw) if raw else None

    def flush_idle(self, call_id: str, stream_id: str, now_ms: int, caught_up: bool, owner: Any) -> Outcome | None:
        """Close the open utterance of a stream whose producer went quiet, and let go of the audio
        it kept (their records may then be committed): only when it has either, it is still quiet
        now (audio may have come back since the request), and its partition is read to its end
        (`caught_up`: a worker that is behind has the stream's next chunks waiting and must not
        cut the utterance early)."""
        state = self.table.state(call_id, stream_id)
        if state is None or not caught_up or not (state.blocks or EndpointState.from_bytes(state.endpoint).is_open):
            return None
        if now_ms - state.last_received_ms < self.pipeline.config.idle_flush_ms:
            return None
        return self._record(self.pipeline.assembler.flush_idle(state, now_ms, self.table.read), owner)

    def evict(self, call_id: str, stream_id: str, now_ms: int, owner: Any) -> Outcome | None:
        """Forget a stream (idle past its TTL, or over the stream cap): its open utterance is
        transcribed first, then its state and audio go."""
        state = self.table.state(call_id, stream_id)
        if state is None:
            return None
        log.info("evicting stream call=%s stream=%s (idle %.0fs)", call_id, stream_id,
                 (now_ms - state.last_received_ms) / 1000)
        return self._record(self.pipeline.assembler.evict(state, now_ms, self.table.read), owner)

    def flush(self, call_id: str, stream_id: str, now_ms: int, owner: Any = None) -> Outcome | None:
        """Close a stream's open utterance now (a bounded job, such as a replay, reached its end)."""
        state = self.table.state(call_id, stream_id)
        if state is None:
            return None
        return self._record(self.pipeline.assembler.flush_idle(state, now_ms, self.table.read), owner)

    def _record(self, outcome: Outcome, owner: Any) -> Outcome:
        self.table.record(outcome, owner)
        call_id = outcome.state.call_id
        if (outcome.utterances or outcome.speculative or outcome.interim) and call_id not in self._call_settings:
            self._call_settings[call_id] = self.call_settings(call_id)
        return outcome

    @property
    def ready(self) -> list[tuple[StreamState, Utterance]]:
        """Every utterance the batch finished, with its stream's state as the batch found it
        (languages change only in `transcribe`, after the model has run)."""
        return [(outcome.state, utterance) for _, outcome in self.outcomes for utterance in outcome.utterances]

    @property
    def speculative(self) -> list[tuple[StreamState, Utterance]]:
        """The streams' speculative cuts still worth running: each stream's latest, unless a later
        cut of the stream in this batch superseded it or its speaker has spoken again since."""
        latest = self._latest_cuts(lambda outcome: outcome.speculative, lambda outcome: bool(outcome.utterances))
        return [item for item in latest if self._still_silent(item[1])]

    def overtaken_speculations(self) -> list[Utterance]:
        """Speculative cuts whose final cut came in this same batch (the batch started after the
        endpoint was sure): their finals' stages say so (streams/core/stages.py "same_batch")."""
        overtaken, latest = [], {}
        for _, outcome in self.outcomes:
            stream = (outcome.state.call_id, outcome.state.stream_id)
            if outcome.speculative:
                latest[stream] = outcome.speculative[-1]
            if outcome.utterances and latest.get(stream) is not None:
                overtaken += [latest.pop(stream)]
        return overtaken

    @property
    def interims(self) -> list[tuple[StreamState, Utterance]]:
        """Each stream's latest interim cut, unless a later cut of the stream in this batch (its
        final, or a speculation: the speaker has stopped) superseded it."""
        return self._latest_cuts(lambda outcome: outcome.interim,
                                 lambda outcome: bool(outcome.utterances or outcome.speculative))

    def _latest_cuts(self, cuts_of: Callable[[Outcome], list[Utterance]],
                     superseded: Callable[[Outcome], bool]) -> list[tuple[StreamState, Utterance]]:
        """Each stream's latest cut of one kind (`cuts_of` an outcome), unless a later outcome of
        the stream without one `superseded` it; in the order streams first appeared."""
        latest: dict[tuple[str, str], tuple[StreamState, Utterance] | None] = {}
        for _, outcome in self.outcomes:
            stream = (outcome.state.call_id, outcome.state.stream_id)
            if cuts_of(outcome):
                latest[stream] = (outcome.state, cuts_of(outcome)[-1])
            elif superseded(outcome):
                latest[stream] = None
        return [item for item in latest.values() if item is not None]

    def interims_with(self, deferred: Sequence[tuple[StreamState, Utterance, CallSettings | None]]
                      ) -> tuple[list[tuple[StreamState, Utterance]], int]:
        """This batch's interim cuts, after those an earlier batch deferred (with their call's
        settings), unless this batch cut their stream again; and how many deferred ones that
        dropped (superseded)."""
        cut = {(outcome.state.call_id, outcome.state.stream_id) for _, outcome in self.outcomes
               if outcome.utterances or outcome.speculative or outcome.interim}
        carried = []
        for state, utterance, settings in deferred:
            if (utterance.call_id, utterance.stream_id) not in cut:
                self._call_settings.setdefault(utterance.call_id, settings)
                carried.append((state, utterance))
        return carried + self.interims, len(deferred) - len(carried)

    def with_call_settings(self, items: Sequence[tuple[StreamState, Utterance]]
                           ) -> list[tuple[StreamState, Utterance, CallSettings | None]]:
        """Interims to defer to the next batch, with their call's settings as this batch has them."""
        return [(state, utterance, self._call_settings.get(utterance.call_id)) for state, utterance in items]

    def transcribe_interims(self, router: ModelRouter,
                            interims: Sequence[tuple[StreamState, Utterance]]) -> list[Transcribed]:
        """The chosen interims (streams/core/interims.py `choose`) through the model at once."""
        started = time.perf_counter()
        results = self.pipeline.transcribe_interims(router, interims, lambda call_id: self._call_settings.get(call_id))
        self.stage_seconds["model_interims"] += time.perf_counter() - started
        return results

    def _still_silent(self, utterance: Utterance) -> bool:
        state = self.table.latest_state(utterance.call_id, utterance.stream_id)
        if state is None:
            return False
        endpoint = EndpointState.from_bytes(state.endpoint)
        return endpoint.is_open and endpoint.speech_end * 1000 // SAMPLE_RATE == utterance.speech_end_ms

    def transcribe(self, router: ModelRouter, mode: str | None = None,
                   foreseen_first: bool = False) -> list[Transcribed]:
        """Every finished utterance through the model at once, with the speculative cuts when
        there is room (see `Pipeline.transcribe`); what happened to speculations is added to
        `speculation_counts`. With `foreseen_first` (the worker), finals whose words a
        speculation already has come first, alone: when others need the model, those are left
        (`left`) for `transcribe_left`, which the caller runs after publishing these, so a final
        whose words are ready never waits for a model call. A stream's finals keep their order:
        after its first final that needs the model, its later ones wait too."""
        ready, speculative = self.ready, self.speculative
        first = self._foreseen_first(ready) if foreseen_first else set()
        if first and (len(first) < len(ready) or speculative):
            self.left = ([item for i, item in enumerate(ready) if i not in first], speculative)
            return self._transcribe(router, [ready[i] for i in sorted(first)], [], mode, overtaken=True)
        return self._transcribe(router, ready, speculative, mode, overtaken=True)

    def transcribe_left(self, router: ModelRouter, mode: str | None = None) -> list[Transcribed]:
        """The finals and speculative cuts `transcribe` left for after its foreseen finals were out."""
        (ready, speculative), self.left = self.left or ([], []), None
        return self._transcribe(router, ready, speculative, mode, overtaken=False) if ready or speculative else []

    def _foreseen_first(self, ready: list[tuple[StreamState, Utterance]]) -> set[int]:
        """Indices of the finals that have their words from a speculation, each stream's up to
        its first one that needs the model."""
        first, waiting = set(), set()
        for index, (_, utterance) in enumerate(ready):
            stream = (utterance.call_id, utterance.stream_id)
            if stream not in waiting and self.pipeline.speculations.foresees(utterance):
                first.add(index)
            else:
                waiting.add(stream)
        return first

    def _transcribe(self, router: ModelRouter, ready: list, speculative: list, mode: str | None,
                    overtaken: bool) -> list[Transcribed]:
        started = time.perf_counter()
        counts_before = self.pipeline.speculations.counts.copy()
        if overtaken:  # once per batch
            self.pipeline.speculations.overtaken(self.overtaken_speculations())
        results = self.pipeline.transcribe(router, ready,
                                           lambda u: self.table.latest_state(u.call_id, u.stream_id), mode,
                                           lambda call_id: self._call_settings.get(call_id), speculative)
        self.speculation_counts.update(self.pipeline.speculations.counts - counts_before)
        self.stage_seconds["model"] += time.perf_counter() - started
        return results

    def read_latest(self, key: str) -> bytes | None:
        """Any key as this batch leaves it: what a next batch reads through while this one's
        changes wait for its transcripts (the worker keeps reading while the model runs)."""
        return self.table.read_latest(key)

    def follow(self, previous: "PipelineBatch", read: Read) -> None:
        """This batch read through `previous` (`read_latest`) while `previous` was in the model; now
        that its changes are in the store: read the store (`read`), and take each shared stream's
        language evidence as the model left it (this batch's utterances come after `previous`'s)."""
        self.table.read_from(read)
        after = dict(previous.table.states())
        # The latest states and the states the utterances were cut with (each may be its own object).
        for state in [state for _, state in self.table.states()] + [outcome.state for _, outcome in self.outcomes]:
            key = state_key(state.call_id, state.stream_id)
            if key in after:
                state.language = after[key].language

    def changes(self, partition_of: Callable[[Any], int] = lambda owner: -1) -> Iterator[tuple[str, bytes | None, Any]]:
        """Every key the batch changed, once: (key, value or None for a delete, owner)."""
        return self.table.changes(partition_of)


class MemoryStore(dict):
    """A plain in-memory key-value store for the core: what replay, the bench and `POST /transcribe`
    keep a call's state in (the worker keeps it in a Faust table)."""

    def apply(self, changes: Iterable[tuple[str, bytes | None, Any]]) -> None:
        for key, value, _ in changes:
            if value is None:
                self.pop(key, None)
            else:
                self[key] = value


def cut_utterances(pipeline: Pipeline, chunks: Iterable[AudioChunk],
                   received_ms: Callable[[AudioChunk], int] = lambda chunk: 0) -> list[Utterance]:
    """The utterances a worker cuts from these chunks (same assembly, VAD and endpointing), without
    the model: what `POST /transcribe` waits for and what the bench's floor transcribes."""
    batch = pipeline.batch(MemoryStore().get)  # one batch: the state stays decoded throughout
    utterances: list[Utterance] = []
    for chunk in chunks:
        result = batch.accept_chunk(chunk, received_ms(chunk), None)
        if isinstance(result, Rejected):  # our own chunks: a bug, not bad input
            raise BadChunk(result.reason, result.detail)
        utterances += result.utterances
    return utterances
