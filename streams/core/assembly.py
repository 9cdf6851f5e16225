"""Utterance assembly for one stream: chunk in, finished utterances out, with no Kafka in sight.

`StreamAssembler.accept(state, chunk, ...)` runs a chunk through the whole per-stream
audio path (sequencing -> decode -> VAD -> endpointing) and answers with the new state,
the table writes to make, and the utterances that are ready for the model.

Storage layout (one Faust table, so every write of a stream lands, in order, in one
changelog partition):
- `S|<call>|<stream>`: the small `StreamState` (counters, VAD/resampler/endpointer state, and
  where each kept block of audio came from: its chunk's seq);
- `A|<call>|<stream>|<block>`: one block of 16 kHz PCM16 audio per released chunk, deleted
  once no utterance needs it, and `R|<call>|<stream>|<block>`: the resampler state before it.
  These stay in the worker (streams/core/checkpoints.py keeps them, never the table): the
  audio topic already holds their chunks, and the worker commits no record whose block is
  kept. A worker that takes a stream over without them reads those chunks again; each is a
  duplicate to the sequencer, and `accept` decodes it into its block again (`_rebuild`), from
  the resampler state before the stream's first kept block (`first_resampler`), bit for bit.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace

import numpy as np

from callstt.models.asr.language_id import LanguageEvidence
from callstt.models.audio.decoding import (ENCODINGS, SAMPLE_RATE, ResampleState, check_payload, chunk_duration_ms,
                                           decode_stream_chunk)
from callstt.models.audio.endpointing import Cut, EndpointConfig, Endpointer, EndpointState
from callstt.models.audio.errors import BadChunk
from callstt.models.audio.sequencing import Gap, Ready, Sequencer, SequenceState, SequencingConfig
from callstt.models.audio.vad import StreamingVad, VadState, shared_vad
from callstt.schemas.records import AudioChunk

# The encoding's number in the header of a held chunk (stored in the table: keep the order).
ENCODING_CODES = {name: code for code, name in enumerate(ENCODINGS)}
ENCODING_NAMES = dict(enumerate(ENCODINGS))
# Header kept with a chunk while the sequencer holds it: its format and capture time.
HELD_HEADER = struct.Struct("<BiBq")


def state_key(call_id: str, stream_id: str) -> str:
    return f"S|{call_id}|{stream_id}"


def block_key(call_id: str, stream_id: str, block: int) -> str:
    return f"A|{call_id}|{stream_id}|{block}"


def resampler_key(call_id: str, stream_id: str, block: int) -> str:
    """The resampler state before a block (bytes; b"": a fresh one), to decode its chunk again."""
    return f"R|{call_id}|{stream_id}|{block}"


WRITTEN_BEFORE = -1  # a block's seq when a version before audio by reference wrote it (its audio is in the table)
GAP = -2  # a block's seq when it is silence for chunks that never came


log = logging.getLogger("callstt.assembly")

@dataclass
class Block:
    """Where a stored audio block sits in the stream."""

    number: int
    start_sample: int
    samples: int
    capture_ts_ms: int
    seq: int = WRITTEN_BEFORE  # the chunk it was decoded from (or GAP)


def block_runs(blocks: list[Block]) -> list[list[int]]:
    """Blocks as runs of consecutive ones, [number, start_sample, samples, capture_ts_ms,
    capture step ms, seq, count]: a stream's blocks are nearly all alike (one per chunk), so its
    state record stays small however long the open utterance is."""
    runs: list[list[int]] = []
    for block in blocks:
        if runs and _continues(runs[-1], block):
            run = runs[-1]
            if run[6] == 1:
                run[4] = block.capture_ts_ms - run[3]
            run[6] += 1
        else:
            runs.append([block.number, block.start_sample, block.samples, block.capture_ts_ms, 0, block.seq, 1])
    return runs


def _continues(run: list[int], block: Block) -> bool:
    number, start, samples, capture, step, seq, count = run
    return (block.number == number + count and block.samples == samples and block.start_sample == start + count * samples
            and block.seq == (seq + count if seq >= 0 else seq)
            and (count == 1 or block.capture_ts_ms == capture + count * step))


def blocks_of(runs: list[list[int]]) -> list[Block]:
    return [Block(number + i, start + i * samples, samples, capture + i * step, seq + i if seq >= 0 else seq)
            for number, start, samples, capture, step, seq, count in runs for i in range(count)]


@dataclass
class StreamState:
    """Everything a stream needs between chunks; small, serialisable, kept in the table."""

    call_id: str
    stream_id: str
    sequence: bytes = b""
    resampler: bytes = b""
    vad: bytes = b""
    endpoint: bytes = b""
    position: int = 0  # 16 kHz samples decoded so far
    blocks: list[Block] = field(default_factory=list)
    next_block: int = 0
    utterance_index: int = 0
    language: dict = field(default_factory=dict)  # the stream's language evidence (models/asr/language_id.py)
    hint: str = ""
    last_received_ms: int = 0
    # The stream ended (end_of_stream): what is left is this small record, without audio, for
    # CALLSTT_STREAM_TTL_S, so that its chunks read again after a rebalance or a crash are
    # duplicates. Deleting it at once let a successor that re-read the call's last chunks
    # (its predecessor's commit lost in a rebalance) start the stream again from nothing
    # and publish different text under the same transcript ids.
    ended: bool = False
    # The audio topic offset of the stream's first record (-1: unknown). Reading that record again
    # means the whole stream is read again (a group rewound for a reprocess): it starts over.
    first_offset: int = -1
    partition: int = -1  # of the audio topic, where this stream's events arrive
    # The resampler state before the first kept block not WRITTEN_BEFORE: where decoding its
    # chunk again starts (b"": a fresh resampler).
    first_resampler: bytes = b""

    def to_bytes(self) -> bytes:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in _BYTES_FIELDS:
            data[name] = base64.b64encode(data[name]).decode()
        # Runs (block_runs); "blocks" stays, empty, for versions before audio by reference.
        data["blocks"], data["runs"] = [], block_runs(self.blocks)
        return json.dumps(data, separators=(",", ":")).encode()

    @property
    def needed_seqs(self) -> range:
        """The seqs of the chunks whose records the worker must not commit yet: those of its kept
        blocks, up to the last chunk it took (a later one waits in `sequence`, bytes and all)."""
        kept = next((block.seq for block in self.blocks if block.seq >= 0), None)
        if kept is None:
            return range(0)
        return range(kept, SequenceState.from_bytes(self.sequence).next_seq)

    @property
    def evidence(self) -> LanguageEvidence:
        return LanguageEvidence.from_dict(self.language)

    @property
    def language_label(self) -> str:
        """The stream's language as people see it: committed, else the best guess so far, else the hint."""
        evidence = self.evidence
        return evidence.committed or evidence.best()[0] or self.hint

    @classmethod
    def from_bytes(cls, raw: bytes) -> "StreamState":
        data = json.loads(raw)
        if isinstance(data.get("language"), str):  # written before language evidence: a sticky language
            committed, probability = data.pop("language"), data.pop("language_probability", 0.0)
            data["language"] = LanguageEvidence(committed=committed, probability=probability).to_dict() \
                if committed else {}
        for name in _BYTES_FIELDS:
            if name in data:
                data[name] = base64.b64decode(data[name])
        runs = data.pop("runs", None)
        data["blocks"] = blocks_of(runs) if runs is not None else [Block(**block) for block in data["blocks"]]
        # Fields this version does not know were written by a newer one (a rolling upgrade moves
        # partitions both ways): left out, so the stream goes on with what this version keeps.
        return cls(**{name: value for name, value in data.items() if name in _STATE_FIELDS})


_STATE_FIELDS = frozenset(f.name for f in fields(StreamState))
_BYTES_FIELDS = ("sequence", "resampler", "vad", "endpoint", "first_resampler")


@dataclass(frozen=True)
class Utterance:
    """A finished utterance, ready for the model."""

    call_id: str
    stream_id: str
    index: int
    audio: np.ndarray  # 16 kHz mono float32
    start_ms: int  # within the stream
    end_ms: int
    reason: str
    hint: str
    last_capture_ts_ms: int
    last_received_ts_ms: int
    speech_end_ms: int = 0  # end of its last voiced VAD window, within the stream
    speech_ms: int = 0  # voiced time inside it
    speculative: bool = False  # cut before its end was sure (models/audio/endpointing.py): never published
    revision: int = 0  # an interim cut of the still open utterance (1, 2, ...): published as an interim

    @property
    def interim(self) -> bool:
        return self.revision > 0

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    @property
    def speech_end_capture_ms(self) -> int:
        """When its last speech was captured (the call platform's clock): latency counts from here."""
        return self.last_capture_ts_ms - (self.end_ms - self.speech_end_ms)

    def same_speech(self, other: "Utterance") -> bool:
        """The same utterance of the same stream with the same speech (what a speculative one foresaw)."""
        return (self.call_id, self.stream_id, self.index, self.start_ms, self.speech_end_ms, self.speech_ms) == \
            (other.call_id, other.stream_id, other.index, other.start_ms, other.speech_end_ms, other.speech_ms)


@dataclass
class Decoded:
    """A stream's sub-states, decoded once while one chunk goes through (encoded back once, by
    `StreamAssembler._store`), instead of from bytes at every step."""

    endpoint: EndpointState
    vad: VadState | None
    resampler: ResampleState | None

    @classmethod
    def of(cls, state: "StreamState") -> "Decoded":
        return cls(EndpointState.from_bytes(state.endpoint), VadState.from_bytes(state.vad) if state.vad else None,
                   ResampleState.from_bytes(state.resampler) if state.resampler else None)


@dataclass
class Outcome:
    state: StreamState
    writes: dict[str, bytes] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    utterances: list[Utterance] = field(default_factory=list)
    # The stream's open utterance cut speculatively (at most one: the latest), for the model to
    # start on before its end is sure; a later cut of the stream supersedes it.
    speculative: list[Utterance] = field(default_factory=list)
    # The open utterance so far (at most one: the latest interim cut), for an interim transcript;
    # a later cut of the stream supersedes it.
    interim: list[Utterance] = field(default_factory=list)
    gaps_filled: int = 0
    duplicates: int = 0
    pending_cuts: list[Cut] = field(default_factory=list)  # decided, not yet sliced into utterances
    # Where the time went (seconds), for the worker's stage metrics: G.711/PCM decode with
    # resampling, and the VAD; the rest of `accept` is sequencing, endpointing and bookkeeping.
    decode_seconds: float = 0.0
    vad_seconds: float = 0.0
    decoded: Decoded | None = field(default=None, repr=False)  # while the assembler works on it
    forgotten: bool = False  # evicted: the stream's state goes from the store too
    seq: int | None = None  # the chunk's, when a chunk made the outcome


@dataclass(frozen=True)
class AssemblyConfig:
    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    sequencing: SequencingConfig = field(default_factory=SequencingConfig)
    max_chunk_ms: float = 2000.0
    max_gap_ms: float = 10_000.0  # longer gaps end the utterance instead of allocating silence


class StreamAssembler:
    """Pure per-stream logic; one instance serves every stream of a worker."""

    def __init__(self, config: AssemblyConfig | None = None, vad: StreamingVad | None = None) -> None:
        self.config = config or AssemblyConfig()
        self.vad = vad or shared_vad()
        self.endpointer = Endpointer(self.config.endpoint)
        self.sequencer = Sequencer(self.config.sequencing)

    def new_state(self, call_id: str, stream_id: str) -> StreamState:
        return StreamState(call_id=call_id, stream_id=stream_id, sequence=SequenceState().to_bytes(),
                           endpoint=EndpointState().to_bytes())

    def accept(self, state: StreamState, chunk: AudioChunk, received_ms: int,
               read_block: Callable[[str], bytes | None], offset: int = -1) -> Outcome:
        """Run one chunk through the stream (`offset`: its record's offset in the audio topic, -1
        when it has none). Raises BadChunk (state untouched) for bad input."""
        # Validate now, before the sequencer may hold the chunk: bad input never enters state.
        # (Decoding waits for the sequencer's release: each payload is decoded once.)
        encoding = check_payload(chunk.payload, str(getattr(chunk.encoding, "value", chunk.encoding)),
                                 chunk.sample_rate, chunk.channels, self.config.max_chunk_ms, chunk.end_of_stream)
        if chunk.seq < 0:
            raise BadChunk("negative_seq", f"seq {chunk.seq} is negative")
        if state.ended:
            if offset < 0 or offset != state.first_offset:
                return self._after_end(state, chunk, received_ms)
            log.info("call=%s stream=%s: its first record (offset %d) again, the stream starts over",
                     state.call_id, state.stream_id, offset)
            state = self.new_state(state.call_id, state.stream_id)
        if state.first_offset < 0:
            state = replace(state, first_offset=offset)
        duration_ms = chunk_duration_ms(len(chunk.payload), encoding, chunk.sample_rate, chunk.channels)
        held = HELD_HEADER.pack(ENCODING_CODES[encoding], chunk.sample_rate, chunk.channels,
                                chunk.capture_ts_ms) + chunk.payload
        sequence = SequenceState.from_bytes(state.sequence)
        rebuilt: dict[str, bytes] = {}
        if 0 <= chunk.seq < sequence.next_seq:  # read again: its block's audio may be missing here
            self._rebuild(state, chunk, encoding, read_block, rebuilt)
        duplicates_before = sequence.duplicates
        releases, sequence = self.sequencer.accept(sequence, chunk.seq, held, duration_ms)
        if chunk.end_of_stream:
            more, sequence = self.sequencer.flush(sequence)
            releases += more
        state = replace(state, sequence=sequence.to_bytes(), last_received_ms=received_ms,
                        hint=chunk.language or state.hint, blocks=list(state.blocks))
        outcome = Outcome(state=state, writes=rebuilt, duplicates=sequence.duplicates - duplicates_before,
                          decoded=Decoded.of(state))
        for release in releases:
            self._play(outcome, release)
        self._cut(outcome, received_ms, read_block)
        if chunk.end_of_stream:
            self._flush(outcome, "end_of_stream", received_ms, read_block)
        outcome.seq = chunk.seq
        return self._store(outcome)

    def flush_idle(self, state: StreamState, received_ms: int,
                   read_block: Callable[[str], bytes | None]) -> Outcome:
        """Close the open utterance of a stream whose producer went quiet, then let go of all its
        audio: what the endpointer keeps before the next utterance would come from before the
        silence (and would hold its chunks' records uncommitted for as long as the stream lives)."""
        state = replace(state, blocks=list(state.blocks))
        outcome = Outcome(state=state, decoded=Decoded.of(state))
        self._flush(outcome, "idle", received_ms, read_block)
        for block in state.blocks:
            self._delete_block(outcome, block)
        state.blocks, state.first_resampler = [], b""
        return self._store(outcome)

    @staticmethod
    def _store(outcome: Outcome) -> Outcome:
        """The decoded sub-states back into the stream's state, once."""
        state, decoded = outcome.state, outcome.decoded
        state.endpoint = decoded.endpoint.to_bytes()
        if decoded.vad is not None:
            state.vad = decoded.vad.to_bytes()
        if decoded.resampler is not None:
            state.resampler = decoded.resampler.to_bytes()
        outcome.decoded = None
        return outcome

    # -- steps -----------------------------------------------------------------------------

    def _play(self, outcome: Outcome, release: Ready | Gap) -> None:
        """Decode a released chunk (or silence for a gap) and store it as the next block, with the
        resampler state before it."""
        state = outcome.state
        resampler = outcome.decoded.resampler
        before = resampler.to_bytes() if resampler is not None else b""
        if isinstance(release, Gap):
            outcome.gaps_filled += release.count
            log.info("call=%s stream=%s: chunks %d..%d never came, %.0f ms of silence instead", state.call_id,
                     state.stream_id, release.first_seq, release.first_seq + release.count - 1, release.silence_ms)
            silence_ms = min(release.silence_ms, self.config.max_gap_ms)
            samples = np.zeros(int(silence_ms * SAMPLE_RATE / 1000), dtype=np.float32)
            capture_ts = state.blocks[-1].capture_ts_ms if state.blocks else 0
        else:
            started = time.perf_counter()
            code, sample_rate, channels, capture_ts = HELD_HEADER.unpack_from(release.payload)
            samples, outcome.decoded.resampler = decode_stream_chunk(
                release.payload[HELD_HEADER.size:], ENCODING_NAMES[code], sample_rate, channels,
                outcome.decoded.resampler, self.config.max_chunk_ms, end_of_stream=True)
            outcome.decode_seconds += time.perf_counter() - started
        if len(samples) == 0:
            return
        block = Block(state.next_block, state.position, len(samples), capture_ts,
                      GAP if isinstance(release, Gap) else release.seq)
        outcome.writes[block_key(state.call_id, state.stream_id, block.number)] = pcm16(samples)
        outcome.writes[resampler_key(state.call_id, state.stream_id, block.number)] = before
        if not state.blocks or state.blocks[-1].seq == WRITTEN_BEFORE:  # (then all the kept ones are)
            state.first_resampler = before
        state.blocks.append(block)
        state.next_block += 1
        state.position += len(samples)
        started = time.perf_counter()
        probabilities, outcome.decoded.vad = self.vad.process(samples, outcome.decoded.vad)
        outcome.vad_seconds += time.perf_counter() - started
        cuts, outcome.decoded.endpoint = self.endpointer.feed(outcome.decoded.endpoint, probabilities)
        outcome.pending_cuts.extend(cuts)

    def _flush(self, outcome: Outcome, reason: str, received_ms: int,
              read_block: Callable[[str], bytes | None]) -> None:
        state = outcome.state
        cuts, outcome.decoded.endpoint = self.endpointer.flush(outcome.decoded.endpoint, reason,
                                                               audio_end=state.position)
        outcome.pending_cuts.extend(cuts)
        self._cut(outcome, received_ms, read_block)
        if reason == "end_of_stream":
            self._close(outcome)

    def evict(self, state: StreamState, received_ms: int, read_block: Callable[[str], bytes | None]) -> Outcome:
        """Forget a stream that stayed idle too long (or one over the stream cap, or one that ended
        long enough ago): its open utterance is transcribed first, then its state and audio go."""
        if state.ended:
            return Outcome(state=state, forgotten=True)
        outcome = self.flush_idle(state, received_ms, read_block)
        self._close(outcome)
        outcome.forgotten = True
        return outcome

    def _close(self, outcome: Outcome) -> None:
        """The stream is over: its audio goes, and its state shrinks to what tells a chunk read
        again from a new one (the sequencer's)."""
        state = outcome.state
        state.ended = True
        for block in state.blocks:
            self._delete_block(outcome, block)
        state.blocks = []
        state.vad = state.resampler = state.first_resampler = b""
        if outcome.decoded is not None:  # (still decoded: keep `_store` from writing them back)
            outcome.decoded.vad = outcome.decoded.resampler = None

    @staticmethod
    def _after_end(state: StreamState, chunk: AudioChunk, received_ms: int) -> Outcome:
        """A chunk of a stream that ended: one it had before is a duplicate (read again after a
        rebalance or a crash, or sent twice); a new one is bad input, since the stream is over."""
        sequence = SequenceState.from_bytes(state.sequence)
        if chunk.seq >= sequence.next_seq:
            raise BadChunk("after_end_of_stream", f"seq {chunk.seq} came after the stream ended "
                                                  f"(its last seq was {sequence.next_seq - 1})")
        sequence = replace(sequence, duplicates=sequence.duplicates + 1)
        return Outcome(state=replace(state, sequence=sequence.to_bytes(), last_received_ms=received_ms), duplicates=1)

    def _cut(self, outcome: Outcome, received_ms: int, read_block: Callable[[str], bytes | None]) -> None:
        state = outcome.state
        cuts, outcome.pending_cuts = outcome.pending_cuts, []
        if cuts:
            outcome.speculative, outcome.interim = [], []  # superseded by what the endpointer decided since
        for cut in cuts:
            if not cut.speculative and not cut.interim:
                outcome.utterances.append(self._utterance(outcome, cut, received_ms, read_block))
        # An earlier speculation or interim is superseded by the cuts after it: only the last counts.
        if cuts and cuts[-1].speculative:
            outcome.speculative = [self._utterance(outcome, cuts[-1], received_ms, read_block)]
        elif cuts and cuts[-1].interim:
            outcome.interim = [self._utterance(outcome, cuts[-1], received_ms, read_block)]
        keep_from = self.endpointer.keep_from_sample(outcome.decoded.endpoint)
        deleted = False
        while state.blocks and state.blocks[0].start_sample + state.blocks[0].samples <= keep_from:
            self._delete_block(outcome, state.blocks.pop(0))
            deleted = True
        first = next((block for block in state.blocks if block.seq != WRITTEN_BEFORE), None)
        if deleted and first is not None:
            key = resampler_key(state.call_id, state.stream_id, first.number)
            before = outcome.writes[key] if key in outcome.writes else read_block(key)
            if before is not None:  # (None: its chunk was not read again yet; the state keeps the last known)
                state.first_resampler = before

    def _utterance(self, outcome: Outcome, cut: Cut, received_ms: int,
                   read_block: Callable[[str], bytes | None]) -> Utterance:
        state = outcome.state
        pieces = []
        last_capture = 0
        for block in state.blocks:
            block_end = block.start_sample + block.samples
            if block_end <= cut.start_sample or block.start_sample >= cut.end_sample:
                continue
            key = block_key(state.call_id, state.stream_id, block.number)
            raw = outcome.writes.get(key)
            if raw is None:
                raw = read_block(key)
            if raw is None:  # lost block (should not happen): keep timing with silence
                log.error("call=%s stream=%s utterance %d: audio block %d missing from the store, silence instead",
                          state.call_id, state.stream_id, state.utterance_index, block.number)
                audio = np.zeros(block.samples, dtype=np.float32)
            else:
                audio = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32767.0
            lo = max(cut.start_sample - block.start_sample, 0)
            hi = min(cut.end_sample - block.start_sample, block.samples)
            pieces.append(audio[lo:hi])
            last_capture = block.capture_ts_ms + (hi * 1000) // SAMPLE_RATE
        index = state.utterance_index
        if not cut.speculative and not cut.interim:  # those foresee this index's utterance, they do not make one
            state.utterance_index += 1
        return Utterance(
            call_id=state.call_id, stream_id=state.stream_id, index=index,
            audio=np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32),
            start_ms=cut.start_sample * 1000 // SAMPLE_RATE, end_ms=cut.end_sample * 1000 // SAMPLE_RATE,
            reason=cut.reason, hint=state.hint, last_capture_ts_ms=last_capture, last_received_ts_ms=received_ms,
            speech_end_ms=cut.speech_end_sample * 1000 // SAMPLE_RATE, speech_ms=cut.speech_ms,
            speculative=cut.speculative, revision=cut.revision,
        )

    def _delete_block(self, outcome: Outcome, block: Block) -> None:
        for key in (block_key(outcome.state.call_id, outcome.state.stream_id, block.number),
                    resampler_key(outcome.state.call_id, outcome.state.stream_id, block.number)):
            if outcome.writes.pop(key, None) is None:
                outcome.deletes.append(key)

    def _rebuild(self, state: StreamState, chunk: AudioChunk, encoding: str, read_block: Callable[[str], bytes | None],
                 writes: dict[str, bytes]) -> None:
        """`chunk` was read again. If its block is kept but its audio is not here (the stream came
        from another worker, whose blocks stayed in it), decode it again into `writes`, with the
        resampler state before it, and fill the gaps' silence that follows. Blocks come back in
        order as their chunks are read again (the worker committed none of them)."""
        index = _block_index(state.blocks, chunk.seq)
        if index is None:
            return
        call, stream = state.call_id, state.stream_id
        block = state.blocks[index]
        if self._has(block_key(call, stream, block.number), read_block, writes):
            return
        before = self._resampler_before(state, index, read_block, writes)
        if before is None:
            log.warning("call=%s stream=%s: chunk %d read again before the chunk ahead of it; its audio stays "
                        "missing", call, stream, chunk.seq)
            return
        samples, after = decode_stream_chunk(chunk.payload, encoding, chunk.sample_rate, chunk.channels,
                                             ResampleState.from_bytes(before) if before else None,
                                             self.config.max_chunk_ms, end_of_stream=True)
        if len(samples) != block.samples:  # (a bug, not bad input: the same bytes decode the same)
            log.error("call=%s stream=%s: chunk %d decoded again into %d samples, not %d", call, stream, chunk.seq,
                      len(samples), block.samples)
            return
        writes[block_key(call, stream, block.number)] = pcm16(samples)
        writes[resampler_key(call, stream, block.number)] = before
        after_bytes = after.to_bytes()
        for following in state.blocks[index + 1:]:
            writes[resampler_key(call, stream, following.number)] = after_bytes
            if following.seq != GAP:
                break
            writes[block_key(call, stream, following.number)] = pcm16(np.zeros(following.samples, dtype=np.float32))

    def _resampler_before(self, state: StreamState, index: int, read_block: Callable[[str], bytes | None],
                          writes: dict[str, bytes]) -> bytes | None:
        """The resampler state before block `index`: kept with it, else the state's `first_resampler`
        when only gaps (refilled with silence here) come between the first block and it."""
        call, stream = state.call_id, state.stream_id
        key = resampler_key(call, stream, state.blocks[index].number)
        before = writes[key] if key in writes else read_block(key)
        if before is not None:
            return before
        earlier = [block for block in state.blocks[:index] if block.seq != WRITTEN_BEFORE]
        if any(block.seq != GAP for block in earlier):
            return None
        for gap in earlier:
            writes[block_key(call, stream, gap.number)] = pcm16(np.zeros(gap.samples, dtype=np.float32))
            writes[resampler_key(call, stream, gap.number)] = state.first_resampler
        return state.first_resampler

    @staticmethod
    def _has(key: str, read_block: Callable[[str], bytes | None], writes: dict[str, bytes]) -> bool:
        return key in writes or read_block(key) is not None


def _block_index(blocks: list[Block], seq: int) -> int | None:
    """Where the block of chunk `seq` is among `blocks` (None: not kept). Blocks follow their
    chunks' order, so without gaps or earlier versions' blocks it is `seq` past the first one."""
    guess = seq - blocks[0].seq if blocks and blocks[0].seq >= 0 else -1
    if 0 <= guess < len(blocks) and blocks[guess].seq == seq:
        return guess
    return next((i for i, block in enumerate(blocks) if block.seq == seq), None)


def pcm16(samples: np.ndarray) -> bytes:
    """16 kHz float samples as stored in a block (PCM16, little-endian)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
