"""What the worker's agent does with the records it takes, around the pipeline core.

    records -> PipelineBatch (streams/core/pipeline.py): chunks accepted, control requests run,
               call settings kept (in memory: nothing here waits for Kafka)
    then, in the background, once the model is free:
            -> rejected records to the dead-letter topic, acknowledged
            -> every finished utterance through the model at once, in the model thread
            -> transcripts published and acknowledged
            -> interims of open utterances, when no final waits and the interim lane is free
               (Pipeline.interims_to_run): started in the interim lane, which the batch does not
               wait for (published on the partial topic, best effort)
            -> table changes to the checkpoint layer (streams/core/checkpoints.py), where the
               audio blocks stay (never in the table); the streams due for a checkpoint (ended,
               forgotten, asked by the idle timer, or CALLSTT_CHECKPOINT_INTERVAL_S since their
               last) have their state written to the table, each to its own record's
               partition, acknowledged by the broker
            -> the records whose effect is in the table, and whose chunk is behind no kept
               audio block, may now be committed (released); the others stay held

The agent keeps reading while the model runs: records taken meanwhile join the *open* batch,
which reads through the *running* batch's changes not yet written (`read_latest`), so a
stream's chunks see what its earlier chunks did; when the running batch is done, the open one
starts (`follow`: its reads go to the checkpoint layer again, then the table, and its streams
take the language evidence the model left). So the end of an utterance is noticed while the
model works on others, and all that ended meanwhile meet the model together. At most one batch
runs and one is open; the open one takes at most CALLSTT_BATCH_MAX_EVENTS records before the
agent waits (the backlog stays in Kafka, not in memory).

Interims have their own lane, a thread of their own beside the model thread: the next batch's
finals go to the model while an interim call still runs (at once when CALLSTT_MODEL_LANES >= 2;
with one lane they queue behind it in the backend), and at most one interim call runs at a
time (those cut meanwhile are deferred, coalesced per stream). Interims change no state, so
nothing about acknowledgements or commits waits for them.

Guarantee: at-least-once. Table state is written only after the transcripts it led to are
acknowledged, batch after batch in order, and records are released (committable) only once the
checkpoint that has their effect is acknowledged by the broker and no kept block needs their
audio; a crash repeats work (same transcript_id) and never skips it. When Faust waits for every
record handed out (a rebalance, a shutdown), everything waiting is checkpointed
(`checkpoint_everything`) and the records held for their audio are given up (their partition's
next owner reads them again). This module knows Faust only through the callables it is given;
streams/worker/app.py wires them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from callstt.schemas.records import Transcript
from callstt.streams.core import retry
from callstt.streams.core.assembly import StreamState, state_key
from callstt.streams.core.call_options import settings_key
from callstt.streams.core.checkpoints import Checkpoints
from callstt.streams.core.pipeline import Pipeline, PipelineBatch, Rejected, Transcribed
from callstt.streams.core.retry import FailureWatch
from callstt.streams.worker import metrics
from callstt.streams.worker.faust_compat import bind_event
from callstt.streams.worker.web import WorkerStatus

log = logging.getLogger("callstt.worker")


def now_ms() -> int:
    return int(time.time() * 1000)


def record_time_ms(message: Any) -> int:
    """When the broker (or its producer) stamped the record, in ms; now when it carries none."""
    return int(message.timestamp * 1000) if message.timestamp else now_ms()


def dead_letter_headers(message: Any, reason: str, detail: str) -> dict[str, bytes]:
    """The headers of a dead-letter record: why, and where the original came from."""
    return {"reason": reason.encode(), "detail": detail[:500].encode(),
            "source_topic": message.topic.encode(), "source_partition": str(message.partition).encode(),
            "source_offset": str(message.offset).encode()}


@dataclass
class WorkerIO:
    """How the batch handler reaches Kafka and the table (given by streams/worker/app.py)."""

    send_transcript: Callable[[bytes, bytes], Awaitable[Awaitable[Any]]]  # key, value -> ack future
    send_partial: Callable[[bytes, bytes], Awaitable[Awaitable[Any]]]  # an interim transcript, the same way
    send_dead_letter: Callable[[Any, dict[str, bytes]], Awaitable[Awaitable[Any]]]  # message, headers
    read_table: Callable[[str], bytes | None]  # the table itself (the worker reads through its Checkpoints)
    write_table: Callable[[str, bytes | None], None]  # None: delete
    table_written: Callable[[], Awaitable[None]]  # every write so far is in the changelog (acknowledged)
    # The agent has taken the audio partition to its end: (partition, last offset it accepted) -> bool.
    taken_to_end: Callable[[int, int], bool]
    mark_done: Callable[[int, int], None]  # (audio partition, offset): its batch is done
    control_topic: str
    call_settings_topic: str


@dataclass
class Batch:
    """Records accepted into one PipelineBatch, and the dead letters they owe."""

    pipeline_batch: PipelineBatch
    events: list = field(default_factory=list)
    dead_letters: list[tuple[Any, Rejected]] = field(default_factory=list)
    # stream (or settings key) -> the records that changed it, with their chunk's seq (None: not a chunk)
    held: dict[str, list[tuple[Any, int | None]]] = field(default_factory=dict)
    asked: set[str] = field(default_factory=set)  # streams to checkpoint at the end of the batch
    # (writes, records to release): decided once, so a retried batch writes the same again.
    checkpoint: tuple[list, list] | None = None

    def free(self) -> list:
        """The records that changed no state (dead letters, requests for streams gone): committable
        once the batch is done."""
        held = {id(event) for events in self.held.values() for event, _ in events}
        return [event for event in self.events if id(event) not in held]


class BatchHandler:
    def __init__(self, pipeline: Pipeline, status: WorkerStatus, io: WorkerIO, model_thread: ThreadPoolExecutor,
                 flush_requested: dict[str, float], release: Callable[[Any], None] = lambda event: None,
                 max_open_events: int = 2000, watch: FailureWatch | None = None,
                 interim_lane: ThreadPoolExecutor | None = None, checkpoint_interval_ms: int = 10_000,
                 give_up: Callable[[Any], None] = lambda event: None) -> None:
        self.pipeline = pipeline
        self.watch = watch  # hears of every failed and finished batch: /health's "stalled"
        self.status = status
        self.io = io
        self.model_thread = model_thread  # the finals' (and speculations') model calls
        self.interim_lane = interim_lane or ThreadPoolExecutor(max_workers=1, thread_name_prefix="interims")
        self.interim_task: asyncio.Task | None = None  # the interim call in flight and its publishing
        self.flush_requested = flush_requested  # the idle timer's requests on their way
        self.release = release  # a record's effect is in the table: it may be committed
        self.give_up = give_up  # a record neither released nor held while Faust waits: read again later
        # The worker's reads go through the changes waiting for their stream's checkpoint, and the
        # audio blocks kept in it (never in the table).
        self.checkpoints = Checkpoints(io.read_table, partition_of=lambda event: event.message.partition,
                                       interval_ms=checkpoint_interval_ms,
                                       needed=lambda state: StreamState.from_bytes(state).needed_seqs,
                                       bind=bind_event)
        self.draining = False  # Faust waits for every record handed out: checkpoint everything
        self.writing = asyncio.Lock()  # one checkpoint's writes and acknowledgements at a time
        self.max_open_events = max_open_events
        self.open: Batch | None = None  # taking records while another batch runs
        self.running: Batch | None = None
        self.task: asyncio.Task | None = None
        # The last audio offset accepted, per partition: an idle flush waits until nothing is left
        # behind it (after a restart, audio fetched with the flush request may follow it).
        self.taken: dict[int, int] = {}

    async def take(self, events: list) -> None:
        """Accept the agent's records into the open batch; start it when nothing runs. Returns at
        once, unless the open batch is full: then once it has started."""
        if self.open is None:
            read = self.running.pipeline_batch.read_latest if self.running else self.checkpoints.read
            self.open = Batch(self.pipeline.batch(read))
        self.accept(self.open, events)
        if self.running is None:
            self.start()
        while self.open is not None and len(self.open.events) >= self.max_open_events and self.task:
            await asyncio.wait({self.task})

    def start(self) -> None:
        self.running, self.open = self.open, None
        self.task = asyncio.get_running_loop().create_task(self.run(self.running))

    async def run(self, batch: Batch) -> None:
        await self.finish_until_done(batch)
        for event in batch.free() + batch.checkpoint[1]:
            self.release(event)
        for event in batch.events:
            if event.message.topic not in (self.io.control_topic, self.io.call_settings_topic):
                self.io.mark_done(event.message.partition, event.message.offset)
        metrics.HELD_RECORDS.set(self.checkpoints.held)
        self.running = self.task = None
        if self.open is not None:
            self.open.pipeline_batch.follow(batch.pipeline_batch, self.checkpoints.read)
            self.start()

    async def close(self) -> None:
        """The agent stops: stop the running batch (its records stay unreleased, so uncommitted)
        and any interim call's publishing."""
        tasks = [task for task in (self.task, self.interim_task) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def finish_until_done(self, batch: Batch) -> None:
        """A batch that fails (a broker hiccup, a leader moving) is retried as a whole, with
        backoff, rather than skipped: its transcripts were published at most, and the table writes
        made before the failure only tell the retry that those chunks are done. A failure that does
        not pass makes the worker stalled, then exit (the watch: streams/lifecycle.py)."""
        def failed(error: Exception, delay: float) -> None:
            metrics.BATCH_FAILURES.inc()
            log.exception("a batch of %d records failed (%s: %s); retrying in %.1f s, its records stay "
                          "unacknowledged meanwhile", len(batch.events), type(error).__name__, error, delay)

        await retry.until_done(lambda: self.finish(batch), failed, self.watch)

    def accept(self, batch: Batch, events: list) -> None:
        """Events in arrival order through their streams (in memory; dead letters are sent when the
        batch finishes)."""
        metrics.EVENTS_PER_BATCH.observe(len(events))
        pipeline_batch = batch.pipeline_batch
        for event in events:
            batch.events.append(event)
            bind_event(event)
            if event.message.topic == self.io.control_topic:
                self.control(event, batch)
                continue
            if event.message.topic == self.io.call_settings_topic:
                self.call_settings(event, batch)
                continue
            metrics.CHUNKS.inc()
            metrics.CHUNK_BYTES.inc(len(event.message.value or b""))
            self.taken[event.message.partition] = max(self.taken.get(event.message.partition, -1),
                                                      event.message.offset)
            result = pipeline_batch.accept_record(event.message.value, now_ms(), owner=event,
                                                  offset=event.message.offset)
            if isinstance(result, Rejected):
                self.reject(batch, event, result)
            else:
                self.hold_for(batch, event, state_key(result.state.call_id, result.state.stream_id), result.seq)

    async def finish(self, batch: Batch) -> None:
        """Dead letters acknowledged, then one model call for every utterance the batch finished,
        then the transcripts acknowledged, then the table writes."""
        while batch.dead_letters:
            await self.dead_letter(*batch.dead_letters[0])
            batch.dead_letters.pop(0)
        await self.publish(batch.pipeline_batch)
        self.start_interims(batch.pipeline_batch)
        async with self.writing:
            self.save(batch)
            # Only then may the records be committed: a commit past state still on its way to the
            # changelog would make a replacement skip that audio after a crash.
            await self.io.table_written()

    @staticmethod
    def hold_for(batch: Batch, event: Any, stream: str, seq: int | None = None) -> None:
        """`event` changed `stream`'s state: it is committable once the stream's checkpoint is, and
        no kept block has its chunk's audio (`seq`)."""
        batch.held.setdefault(stream, []).append((event, seq))

    def control(self, event: Any, batch: Batch) -> None:
        """A request from the idle timer, run in the stream's own partition: `flush|stream`,
        `evict|stream`, or `expire-settings|` (the call's settings are older than their TTL)."""
        call_id = event.message.key.decode()
        action, _, stream_id = event.message.value.decode().partition("|")
        pipeline_batch, stream = batch.pipeline_batch, state_key(call_id, stream_id)
        if action == "expire-settings":
            if pipeline_batch.expire_call_settings(call_id, now_ms(), self.status.settings.call_settings_ttl_s * 1000,
                                                   owner=event):
                metrics.CALL_SETTINGS.labels("expired").inc()
                log.info("call settings expired for call=%s", call_id)
                self.hold_for(batch, event, settings_key(call_id))
                batch.asked.add(settings_key(call_id))
            return
        if pipeline_batch.state(call_id, stream_id) is None:
            self.status.forget_stream(stream)  # evicted meanwhile
            return
        if action == "evict":
            pipeline_batch.evict(call_id, stream_id, now_ms(), owner=event)
        else:
            partition = event.message.partition
            pipeline_batch.flush_idle(call_id, stream_id, now_ms(),
                                      self.io.taken_to_end(partition, self.taken.get(partition, -1)), owner=event)
        # Either way the stream is checkpointed now: the idle timer asks for quiet streams too.
        self.hold_for(batch, event, stream)
        batch.asked.add(stream)

    def call_settings(self, event: Any, batch: Batch) -> None:
        """A call's settings (or a tombstone clearing them), kept for its later utterances."""
        if not event.message.key:
            self.reject(batch, event, Rejected("missing_key", "a call-settings record needs the call ID as key"))
            return
        call_id = event.message.key.decode(errors="replace")
        result = batch.pipeline_batch.accept_call_settings(call_id, event.message.value, owner=event,
                                                           received_ms=record_time_ms(event.message))
        if isinstance(result, Rejected):
            self.reject(batch, event, result)
        else:
            self.hold_for(batch, event, settings_key(call_id))
            batch.asked.add(settings_key(call_id))  # a call's settings are written at once
            metrics.CALL_SETTINGS.labels("cleared" if result is None else "set").inc()
            log.info("call settings %s for call=%s", "cleared" if result is None else "set", call_id)

    @staticmethod
    def reject(batch: Batch, event: Any, rejected: Rejected) -> None:
        message = event.message
        metrics.DEAD_LETTERS.labels(rejected.reason).inc()
        log.warning("dead-letter %s: %s (topic %s partition %s offset %s)", rejected.reason, rejected.detail,
                    message.topic, message.partition, message.offset)
        batch.dead_letters.append((event, rejected))

    async def dead_letter(self, event: Any, rejected: Rejected) -> None:
        message = event.message
        await (await self.io.send_dead_letter(message, dead_letter_headers(message, rejected.reason,
                                                                            rejected.detail)))

    async def publish(self, batch: PipelineBatch) -> None:
        """Transcribe every utterance the batch finished, across calls, in one go in the model thread
        (`CALLSTT_INFERENCE_MODE`), and publish the transcripts, acknowledged. Finals whose words a
        speculation already has go out first; then the model call for the rest, if any
        (`PipelineBatch.transcribe`, `transcribe_left`)."""
        ready = batch.ready
        if not ready and not batch.speculative:
            self.observe_stages(batch, 0)
            return
        decided_at = time.time()
        for _, utterance in ready:
            metrics.UTTERANCES.labels(utterance.reason).inc()
            metrics.UTTERANCE_SECONDS.observe(utterance.seconds)
        for step in (functools.partial(batch.transcribe, foreseen_first=True), batch.transcribe_left):
            results = await asyncio.get_running_loop().run_in_executor(self.model_thread, step, self.status.router)
            self.observe_stages(batch, len(results))
            await self.send_finals(results, decided_at)
            if batch.left is None:
                break

    async def send_finals(self, results: list[Transcribed], decided_at: float) -> None:
        """Finals to the transcript topic, all in flight at once, each acknowledged."""
        with metrics.timed("publish"):
            sent = []
            for result in results:
                self.observe_model(result)
                if result.transcript is None:
                    metrics.SILENT_UTTERANCES.inc()
                    metrics.GUARD_DROPPED.labels(result.dropped or "empty").inc()
                    log.info("no transcript for call=%s stream=%s #%d (%.1f s): %s", result.utterance.call_id,
                             result.utterance.stream_id, result.utterance.index, result.utterance.seconds,
                             result.dropped)
                    if result.stages is not None:
                        self.pipeline.stages.add_final(result.stages)  # nothing published: no transcript id
                    continue
                value = self.pipeline.codec.encode_transcript(result.transcript, self.status.settings.transcript_topic)
                sent.append((result, await self.io.send_transcript(result.transcript.call_id.encode(), value)))
                if result.stages is not None:
                    result.stages.published_ms = now_ms()
            for result, future in sent:  # all in flight at once; each partition keeps its order
                await future
                if result.stages is not None:
                    result.stages.acknowledged_ms = now_ms()
                    result.stages.transcript_id = result.transcript.transcript_id
                    self.pipeline.stages.add_final(result.stages)
                self.on_published(result.transcript, decided_at)

    def start_interims(self, batch: PipelineBatch) -> None:
        """The batch's interim cuts, after its finals, only while no final waits in the open batch
        and no interim call runs (streams/core/interims.py `choose`): one model call in the interim
        lane, which the batch does not wait for. Those that must wait for a final, for room or for
        the lane are deferred to the next batch (one per stream, while recent)."""
        waiting = self.open.pipeline_batch if self.open else None
        lane_busy = self.interim_task is not None and not self.interim_task.done()
        run, skipped = self.pipeline.interims_to_run(batch, waiting, now_ms(), lane_busy)
        metrics.INTERIMS.labels("skipped").inc(skipped)
        if run:
            self.interim_task = asyncio.get_running_loop().create_task(self.publish_interims(batch, run))

    async def publish_interims(self, batch: PipelineBatch, run: list) -> None:
        """Interim cuts through the model in the interim lane, published on the partial topic and
        acknowledged (best effort: one that fails is counted and forgotten; the final still comes)."""
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self.interim_lane, batch.transcribe_interims, self.status.router, run)
        except Exception as error:
            log.warning("an interim call for %d utterances failed: %s: %s", len(run), type(error).__name__, error)
            metrics.INTERIMS.labels("failed").inc(len(run))
            return
        self.observe_stage_seconds(batch)
        sent = []
        for result in results:
            if result.transcript is None:
                metrics.INTERIMS.labels("dropped").inc()
                continue
            value = self.pipeline.codec.encode_transcript(result.transcript, self.status.settings.partial_topic)
            sent.append((result.transcript, await self.io.send_partial(result.transcript.call_id.encode(), value)))
        for transcript, future in sent:
            try:
                await future
            except Exception as error:  # best effort: the final still comes
                log.warning("interim of call=%s not published: %s", transcript.call_id, error)
                metrics.INTERIMS.labels("failed").inc()
                continue
            metrics.INTERIMS.labels("published").inc()
            if transcript.last_audio_capture_ts_ms > 0:
                metrics.INTERIM_LATENCY.observe(max(time.time() - transcript.last_audio_capture_ts_ms / 1000, 0))
            self.status.on_interim(transcript)

    @staticmethod
    def observe_stage_seconds(batch: PipelineBatch) -> None:
        for stage, seconds in batch.stage_seconds.items():
            metrics.STAGE_SECONDS.labels(stage).inc(seconds)
        batch.stage_seconds.clear()

    @classmethod
    def observe_stages(cls, batch: PipelineBatch, finals: int) -> None:
        """The batch's stage seconds and speculation counts, after a step that decided `finals`."""
        cls.observe_stage_seconds(batch)
        counts = batch.speculation_counts
        # What went to the model: the finals no speculation foresaw, and the speculations run.
        model_utterances = finals - counts["used"] + counts["run"]
        if model_utterances > 0:
            metrics.UTTERANCES_PER_MODEL_CALL.observe(model_utterances)
        for outcome in metrics.SPECULATIVE_OUTCOMES:
            if counts[outcome]:
                metrics.SPECULATIVE.labels(outcome).inc(counts[outcome])
        metrics.SPECULATIVE_WASTED_SECONDS.inc(counts["wasted_seconds"])
        counts.clear()

    @staticmethod
    def observe_model(result: Transcribed) -> None:
        metrics.INFERENCE_SECONDS.observe(result.model_seconds)
        if result.utterance.seconds > 0:
            metrics.REALTIME_FACTOR.observe(result.model_seconds / result.utterance.seconds)

    def on_published(self, transcript: Transcript, decided_at: float) -> None:
        acknowledged = time.time()
        metrics.TRANSCRIPTS.labels(transcript.language, transcript.model_name).inc()
        for kind, count in transcript.redactions.items():
            metrics.REDACTIONS.labels(kind).inc(count)
        metrics.ENDPOINT_LATENCY.observe(acknowledged - decided_at)
        if transcript.last_audio_capture_ts_ms > 0:
            metrics.END_OF_SPEECH_LATENCY.observe(max(acknowledged - transcript.last_audio_capture_ts_ms / 1000, 0))
        self.status.on_transcript(transcript)
        log.info("transcript call=%s stream=%s #%d [%s] %s", transcript.call_id, transcript.stream_id,
                 transcript.utterance_index, transcript.language, transcript.text)

    def save(self, batch: Batch) -> None:
        """The batch's table changes to the checkpoint layer, then the writes of every stream due
        for its checkpoint, each bound to its own record (so to its partition). The first try
        decides the checkpoint; a retry writes the same again."""
        pipeline_batch = batch.pipeline_batch
        if batch.checkpoint is None:
            now = now_ms()
            self.checkpoints.add(pipeline_batch.changes(partition_of=lambda event: event.message.partition),
                                 batch.held, now)
            batch.checkpoint = self.checkpoints.take(self.due(batch, now), now)
            if self.draining:
                self.give_up_needed()
            self.observe_streams(pipeline_batch)
        with metrics.timed("table_writes"):
            for key, value, event in batch.checkpoint[0]:
                bind_event(event)
                self.io.write_table(key, value)

    def due(self, batch: Batch, now: int) -> list[str]:
        """The streams to checkpoint after `batch`: those it asked for, those that ended or were
        forgotten, and those waiting CALLSTT_CHECKPOINT_INTERVAL_S; every one while Faust waits.
        (Not at each final: a state record per final would cost the changelog more than the
        finals a successor publishes again after a crash, with the same ids and text.)"""
        if self.draining:
            return self.checkpoints.streams()
        asked = set(batch.asked)
        for _, outcome in batch.pipeline_batch.outcomes:
            if outcome.forgotten or outcome.state.ended:
                asked.add(state_key(outcome.state.call_id, outcome.state.stream_id))
        return self.checkpoints.due(now, asked)

    def give_up_needed(self) -> None:
        """While Faust waits for every record it handed out, those held for their audio are given
        up (streams/core/checkpoints.py `give_up_needed`): read again by their partition's next owner."""
        for event in self.checkpoints.give_up_needed():
            self.give_up(event)

    async def checkpoint_everything(self) -> None:
        """Faust waits for every record it handed out (a rebalance, a shutdown): write every
        stream's waiting changes and release their records now, and at the end of each batch
        until `stop_draining` (the running batch and the open one finish meanwhile)."""
        self.draining = True
        async with self.writing:
            writes, records = self.checkpoints.take(self.checkpoints.streams(), now_ms())
            self.give_up_needed()
            try:
                for key, value, event in writes:
                    bind_event(event)
                    self.io.write_table(key, value)
                await self.io.table_written()
            except Exception as error:  # their next owner repeats them from the committed offset
                log.warning("checkpointing %d table keys before a rebalance or a stop failed (%s: %s); %d records "
                            "stay uncommitted", len(writes), type(error).__name__, error, len(records))
                return
        for event in records:
            self.release(event)
        metrics.HELD_RECORDS.set(self.checkpoints.held)

    def stop_draining(self) -> None:
        self.draining = False

    def partitions_revoked(self, partitions: set[int]) -> None:
        """What still waits for revoked partitions (a checkpoint that failed) is forgotten, its
        records never released: their next owner reads them again from the committed offset."""
        dropped = self.checkpoints.drop(partitions)
        if dropped:
            log.warning("%d records of revoked partitions %s were never checkpointed: their next owner "
                        "repeats them", dropped, sorted(partitions))
        metrics.HELD_RECORDS.set(self.checkpoints.held)

    def observe_streams(self, batch: PipelineBatch) -> None:
        for _, outcome in batch.outcomes:
            key = state_key(outcome.state.call_id, outcome.state.stream_id)
            if outcome.forgotten:
                self.status.forget_stream(key)
            else:
                self.status.on_stream(key, outcome.state)
            self.flush_requested.pop(key, None)
            metrics.GAP_CHUNKS.inc(outcome.gaps_filled)
            metrics.DUPLICATE_CHUNKS.inc(outcome.duplicates)
