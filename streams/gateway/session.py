"""One connection's state, without the socket or Kafka: how its frames become AudioChunks (one
stream per channel with multichannel), where each stream stands in Kafka (`StreamMark`, what a
gateway that takes the stream over resumes from), what it has sent the client, and the pace
it may take.

A stream's mark lives on the gateway-sessions topic (compacted, key = call ID and stream ID):
written when the stream starts, after each final the client was sent, about once a second
while audio is acknowledged, and when the stream ends. A gateway that gets a reconnection for
the stream reads the mark, then the audio topic after the mark's offset for chunks acknowledged
since, so its first chunk takes the next seq (the worker waits for no gap) and its first final
is the one after the last one sent.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from callstt.models.audio.decoding import to_mono
from callstt.schemas.records import AudioChunk, Transcript, Translation
from callstt.streams.gateway.protocol import ListenRequest

MAX_CHUNK_MS = 500  # a larger frame is published as several chunks (the worker takes at most 2000 ms)
# Audio louder than this (RMS over 20 ms) may be speech: after CloseStream the gateway waits for a
# final that covers it. Speech on a phone line is -30..-15 dBFS, its silence under -50.
LOUD_DBFS = -45.0
LOUD_FRAME_MS = 20
# A final's end may stop short of the audio's last loud frame (a trailing breath): this much is covered.
COVERED_MS = 1000
# A translation's speech comes sentence by sentence with no end mark: quiet this long ends it.
SPEECH_QUIET_S = 1.0


@dataclass(frozen=True)
class StreamMark:
    """Where one stream of a call stands (the gateway-sessions topic's value, as JSON)."""

    call_id: str
    stream_id: str
    next_seq: int = 0  # the seq of the stream's next chunk (every earlier one is acknowledged)
    samples: int = 0  # audio acknowledged so far, in samples at sample_rate
    sample_rate: int = 16000
    audio_offset: int = -1  # an audio-topic offset at or before the chunk next_seq - 1 (-1: none yet)
    delivered_through: int = -1  # the last final's utterance index the client was sent
    transcript_offset: int = -1  # the transcript-topic offset to read the stream's unsent finals from
    ended: bool = False
    updated_ms: int = 0

    @property
    def key(self) -> bytes:
        return mark_key(self.call_id, self.stream_id)

    @property
    def audio_ms(self) -> int:
        return self.samples * 1000 // self.sample_rate if self.sample_rate else 0

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, value: bytes) -> StreamMark:
        data = json.loads(value)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


def mark_key(call_id: str, stream_id: str) -> bytes:
    return json.dumps([call_id, stream_id], separators=(",", ":")).encode()


def caught_up_mark(mark: StreamMark, later: list[AudioChunk]) -> StreamMark:
    """The mark moved past the stream's chunks acknowledged after it was written (read from the
    audio topic after `mark.audio_offset`; duplicates and older chunks change nothing)."""
    for chunk in sorted(later, key=lambda chunk: chunk.seq):
        if chunk.seq >= mark.next_seq:
            frame = chunk.encoding.bytes_per_sample * max(chunk.channels, 1)
            mark = replace(mark, next_seq=chunk.seq + 1, samples=mark.samples + len(chunk.payload) // frame,
                           ended=mark.ended or chunk.end_of_stream)
    return mark


class FrameCutter:
    """A connection's binary frames as each stream's payloads: whole samples of every channel
    (a frame that splits one is completed by the next), one payload per stream and channel
    with multichannel (else the frame as it is, its channels for the worker to mix), at most
    MAX_CHUNK_MS each."""

    def __init__(self, request: ListenRequest) -> None:
        self.request = request
        self.leftover = b""

    def cut(self, frame: bytes) -> list[list[bytes]]:
        """Per stream (in `request.stream_ids` order), the payloads of this frame."""
        data = self.leftover + frame
        whole = len(data) - len(data) % self.request.frame_bytes
        self.leftover = data[whole:]
        if not whole:
            return [[] for _ in self.request.stream_ids]
        data = data[:whole]
        if self.request.multichannel and self.request.channels > 1:
            dtype = "<i2" if self.request.encoding.bytes_per_sample == 2 else "u1"
            samples = np.frombuffer(data, dtype=dtype).reshape(-1, self.request.channels)
            streams = [samples[:, channel].tobytes() for channel in range(self.request.channels)]
            bytes_per_frame = self.request.encoding.bytes_per_sample
        else:
            streams, bytes_per_frame = [data], self.request.frame_bytes
        piece = max(1, self.request.sample_rate * MAX_CHUNK_MS // 1000) * bytes_per_frame
        return [[payload[start:start + piece] for start in range(0, len(payload), piece)] for payload in streams]


class StreamLeg:
    """One stream of a connection: the chunks it publishes (seq after seq, from its mark) and what
    its client has been sent."""

    def __init__(self, request: ListenRequest, channel: int, mark: StreamMark) -> None:
        self.request, self.channel, self.mark = request, channel, mark
        self.next_seq = mark.next_seq  # handed out; the mark moves as the broker acknowledges
        self.stream_id = mark.stream_id
        self.last_interim: tuple[int, int] = (-1, -1)  # (utterance index, revision) last sent
        self.samples_sent = mark.samples  # the stream's position, in samples, after its last chunk
        self.loud_until_ms = -1  # where, in the stream, this connection's last loud audio ends
        self.final_end_ms = -1  # where the last final this connection received ends
        self.latest_interim = -1  # the utterance index of the latest interim received
        self.finals_received: set[int] = set()  # utterance indexes (for their translations)
        self.translations_received: set[tuple[int, str]] = set()  # (utterance index, target language)
        self.speech_due: set[int] = set()  # utterances whose translation is spoken
        self.speech_last: dict[int, float] = {}  # utterance index -> when its last speech chunk came
        self.sent_translations: set[tuple[int, str]] = set()

    @property
    def channels(self) -> int:
        return len(self.request.stream_ids)

    def chunk(self, payload: bytes, now_ms: int, end_of_stream: bool = False) -> AudioChunk:
        """The stream's next chunk. Its capture time is when its audio began (now, less its length)."""
        channels = 1 if self.request.multichannel else self.request.channels
        samples = len(payload) // (self.request.encoding.bytes_per_sample * channels)
        chunk = AudioChunk(call_id=self.request.call_id, stream_id=self.stream_id, seq=self.next_seq,
                           capture_ts_ms=now_ms - samples * 1000 // self.request.sample_rate,
                           sample_rate=self.request.sample_rate, encoding=self.request.encoding, channels=channels,
                           payload=payload, end_of_stream=end_of_stream)
        self.next_seq += 1
        if payload:
            loud = loud_end(to_mono(payload, chunk.encoding.value, chunk.sample_rate, channels), chunk.sample_rate)
            if loud is not None:
                self.loud_until_ms = (self.samples_sent + loud) * 1000 // chunk.sample_rate
        self.samples_sent += samples
        return chunk

    def awaits_a_final(self) -> bool:
        """Whether the worker still owes this stream a final: an interim without its final, or loud
        audio after the last final (after CloseStream, the gateway waits for it)."""
        return (self.latest_interim > self.mark.delivered_through
                or self.loud_until_ms > self.final_end_ms + COVERED_MS)

    def awaits_downstream(self, now: float) -> bool:
        """Whether a final of this connection still waits for what the client asked for after it:
        its translations (translate_to), their speech (speech), the speech still coming."""
        targets = self.request.translate_to or ()
        if any((index, target) not in self.translations_received for index in self.finals_received
               for target in targets):
            return True
        if not self.request.speech:
            return False
        return (any(index not in self.speech_last for index in self.speech_due)
                or any(now - last < SPEECH_QUIET_S for last in self.speech_last.values()))

    def acknowledged(self, chunk: AudioChunk, offset: int) -> None:
        """The broker has the chunk (chunks are acknowledged in seq order, one producer per stream)."""
        frame = chunk.encoding.bytes_per_sample * max(chunk.channels, 1)
        self.mark = replace(self.mark, next_seq=chunk.seq + 1, samples=self.mark.samples + len(chunk.payload) // frame,
                            sample_rate=chunk.sample_rate, audio_offset=offset,
                            ended=self.mark.ended or chunk.end_of_stream, updated_ms=int(time.time() * 1000))

    # --- what the client is sent ----------------------------------------------------------------

    def wants_final(self, transcript: Transcript) -> bool:
        return transcript.utterance_index > self.mark.delivered_through

    def wants_interim(self, transcript: Transcript) -> bool:
        """An interim newer than the last sent, of an utterance whose final has not been sent."""
        position = (transcript.utterance_index, transcript.revision)
        return (self.request.interim_results and transcript.utterance_index > self.mark.delivered_through
                and position > self.last_interim)

    def received(self, transcript: Transcript) -> None:
        """A final or interim of this stream came (whether or not the client is sent it)."""
        if transcript.is_final:
            self.final_end_ms = max(self.final_end_ms, transcript.end_ms)
            self.finals_received.add(transcript.utterance_index)
        else:
            self.latest_interim = max(self.latest_interim, transcript.utterance_index)

    def received_translation(self, translation: Translation) -> None:
        self.translations_received.add((translation.utterance_index, translation.target_language))
        if translation.status.value in ("OK", "PASSTHROUGH") and translation.text.strip():
            self.speech_due.add(translation.utterance_index)

    def received_speech(self, utterance_index: int, now: float) -> None:
        self.speech_last[utterance_index] = now

    def sent_final(self, transcript: Transcript, offset: int) -> None:
        self.mark = replace(self.mark, delivered_through=transcript.utterance_index, transcript_offset=offset + 1,
                            updated_ms=int(time.time() * 1000))

    def sent_interim(self, transcript: Transcript) -> None:
        self.last_interim = (transcript.utterance_index, transcript.revision)


def loud_end(samples: np.ndarray, sample_rate: int) -> int | None:
    """The end, in samples, of the last LOUD_FRAME_MS frame louder than LOUD_DBFS; None: none is."""
    frame = max(1, sample_rate * LOUD_FRAME_MS // 1000)
    count = len(samples) // frame
    if not count:
        return None
    frames = samples[:count * frame].reshape(count, frame).astype(np.float64)
    loud = np.flatnonzero(np.sqrt((frames ** 2).mean(axis=1)) > 10 ** (LOUD_DBFS / 20))
    return int(loud[-1] + 1) * frame if loud.size else None


class Pacer:
    """Keeps a connection's audio from running more than `max_ahead_s` ahead of real time since
    it started (a client sending faster is slowed, not buffered): how long to wait before
    reading its next frame."""

    def __init__(self, max_ahead_s: float, started: float | None = None) -> None:
        self.max_ahead_s = max_ahead_s
        self.started = time.monotonic() if started is None else started
        self.audio_s = 0.0

    def add(self, seconds: float) -> None:
        self.audio_s += seconds

    def wait_s(self, now: float | None = None) -> float:
        elapsed = (time.monotonic() if now is None else now) - self.started
        return max(0.0, self.audio_s - elapsed - self.max_ahead_s)
