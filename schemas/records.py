"""Typed records of the project's events, mirroring the Avro schemas field for field.

`to_dict()` gives exactly the dict that the Avro schema describes (what
`schemas.codec` writes), and `from_dict()` takes what the codec reads back; the
field names are the .avsc names. The records are frozen (hashable when their lists
are tuples) and keyword-only, so adding a field with a default never breaks a caller.

Avro `float` is 32-bit: a probability such as 0.9 comes back as 0.8999999761581421.
Compare decoded floats with a tolerance.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

# Fixed namespace for transcript ids (uuid5 of a fixed name, so it never changes).
_TRANSCRIPT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:callstt:transcript")


class Encoding(str, Enum):
    """Sample encoding of an audio chunk's payload (Avro enum `callstt.AudioEncoding`)."""

    PCM_S16LE = "PCM_S16LE"  # signed 16-bit little-endian linear PCM
    MULAW = "MULAW"  # G.711 mu-law, 8 bits a sample
    ALAW = "ALAW"  # G.711 A-law, 8 bits a sample

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self is Encoding.PCM_S16LE else 1


def transcript_id(call_id: str, stream_id: str, utterance_index: int) -> str:
    """The deterministic id of one utterance: the same three values always give the same id.

    A UUID 5 over an unambiguous encoding of the values (a JSON array, so a '/' inside
    an id cannot make two different triples collide), so a consumer that sees a
    transcript twice (a redelivery after a crash) can drop the duplicate by id.
    """
    name = json.dumps([str(call_id), str(stream_id), int(utterance_index)], ensure_ascii=False)
    return str(uuid.uuid5(_TRANSCRIPT_NAMESPACE, name))


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioChunk:
    """One slice of one participant's audio (Avro record `callstt.AudioChunk`)."""

    call_id: str
    stream_id: str
    seq: int
    capture_ts_ms: int
    sample_rate: int
    encoding: Encoding
    channels: int = 1
    payload: bytes
    language: str | None = None
    end_of_stream: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.encoding, Encoding):
            object.__setattr__(self, "encoding", Encoding(self.encoding))

    @property
    def duration_ms(self) -> float:
        """Length of the payload's audio in milliseconds."""
        frame = self.encoding.bytes_per_sample * max(self.channels, 1)
        return 1000.0 * (len(self.payload) // frame) / self.sample_rate if self.sample_rate else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "stream_id": self.stream_id,
            "seq": self.seq,
            "capture_ts_ms": self.capture_ts_ms,
            "sample_rate": self.sample_rate,
            "encoding": self.encoding.value,
            "channels": self.channels,
            "payload": self.payload,
            "language": self.language,
            "end_of_stream": self.end_of_stream,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AudioChunk:
        return cls(
            call_id=data["call_id"],
            stream_id=data["stream_id"],
            seq=data["seq"],
            capture_ts_ms=data["capture_ts_ms"],
            sample_rate=data["sample_rate"],
            encoding=Encoding(data["encoding"]),
            channels=data.get("channels", 1),
            payload=bytes(data["payload"]),
            language=data.get("language"),
            end_of_stream=data.get("end_of_stream", False),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptWord:
    """One recognised word (Avro record `callstt.Word`); times are ms from the start of the stream."""

    text: str
    start_ms: int
    end_ms: int
    probability: float

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "start_ms": self.start_ms, "end_ms": self.end_ms,
                "probability": self.probability}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TranscriptWord:
        return cls(text=data["text"], start_ms=data["start_ms"], end_ms=data["end_ms"],
                   probability=data["probability"])


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptSentence:
    """One sentence of an utterance (Avro record `callstt.Sentence`); times are ms from the start of the stream."""

    text: str
    start_ms: int
    end_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "start_ms": self.start_ms, "end_ms": self.end_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TranscriptSentence:
        return cls(text=data["text"], start_ms=data["start_ms"], end_ms=data["end_ms"])


def _words(items: Iterable[TranscriptWord | Mapping[str, Any]]) -> tuple[TranscriptWord, ...]:
    return tuple(item if isinstance(item, TranscriptWord) else TranscriptWord.from_dict(item) for item in items)


def _sentences(items: Iterable[TranscriptSentence | Mapping[str, Any]]) -> tuple[TranscriptSentence, ...]:
    return tuple(item if isinstance(item, TranscriptSentence) else TranscriptSentence.from_dict(item)
                 for item in items)


@dataclass(frozen=True, slots=True, kw_only=True)
class Transcript:
    """The recognised text of one utterance of one stream (Avro record `callstt.Transcript`).

    `words` and `sentences` are stored as tuples (lists or dicts given are converted).
    """

    transcript_id: str
    call_id: str
    stream_id: str
    utterance_index: int
    is_final: bool = True
    text: str
    language: str
    language_probability: float
    start_ms: int
    end_ms: int
    words: tuple[TranscriptWord, ...] = ()
    sentences: tuple[TranscriptSentence, ...] = ()
    model_name: str
    model_version: str = ""
    backend: str
    avg_logprob: float
    no_speech_prob: float
    last_audio_capture_ts_ms: int
    last_audio_received_ts_ms: int
    produced_ts_ms: int
    timestamps_note: str | None = None
    redactions: Mapping[str, int] = field(default_factory=dict)  # kind -> spans redacted, never the values
    # Interims (is_final False) only: their order within the utterance, and how many leading
    # words every later interim keeps unchanged (streams/core/interims.py); 0 and "" on finals.
    revision: int = 0
    stable_word_count: int = 0
    stable_text: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.words, tuple) or any(not isinstance(w, TranscriptWord) for w in self.words):
            object.__setattr__(self, "words", _words(self.words))
        if not isinstance(self.sentences, tuple) or any(not isinstance(s, TranscriptSentence) for s in self.sentences):
            object.__setattr__(self, "sentences", _sentences(self.sentences))

    def to_dict(self) -> dict[str, Any]:
        return {
            "transcript_id": self.transcript_id,
            "call_id": self.call_id,
            "stream_id": self.stream_id,
            "utterance_index": self.utterance_index,
            "is_final": self.is_final,
            "text": self.text,
            "language": self.language,
            "language_probability": self.language_probability,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "words": [word.to_dict() for word in self.words],
            "sentences": [sentence.to_dict() for sentence in self.sentences],
            "model_name": self.model_name,
            "model_version": self.model_version,
            "backend": self.backend,
            "avg_logprob": self.avg_logprob,
            "no_speech_prob": self.no_speech_prob,
            "last_audio_capture_ts_ms": self.last_audio_capture_ts_ms,
            "last_audio_received_ts_ms": self.last_audio_received_ts_ms,
            "produced_ts_ms": self.produced_ts_ms,
            "timestamps_note": self.timestamps_note,
            "redactions": dict(self.redactions),
            "revision": self.revision,
            "stable_word_count": self.stable_word_count,
            "stable_text": self.stable_text,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transcript:
        """Build from a decoded dict; fields that came later than version 1 fall back to their defaults."""
        return cls(
            transcript_id=data["transcript_id"],
            call_id=data["call_id"],
            stream_id=data["stream_id"],
            utterance_index=data["utterance_index"],
            is_final=data.get("is_final", True),
            text=data["text"],
            language=data["language"],
            language_probability=data["language_probability"],
            start_ms=data["start_ms"],
            end_ms=data["end_ms"],
            words=_words(data.get("words", ())),
            sentences=_sentences(data.get("sentences", ())),
            model_name=data["model_name"],
            model_version=data.get("model_version", ""),
            backend=data["backend"],
            avg_logprob=data["avg_logprob"],
            no_speech_prob=data["no_speech_prob"],
            last_audio_capture_ts_ms=data["last_audio_capture_ts_ms"],
            last_audio_received_ts_ms=data["last_audio_received_ts_ms"],
            produced_ts_ms=data["produced_ts_ms"],
            timestamps_note=data.get("timestamps_note"),
            redactions=dict(data.get("redactions") or {}),
            revision=data.get("revision", 0),
            stable_word_count=data.get("stable_word_count", 0),
            stable_text=data.get("stable_text", ""),
        )


def _codes(items: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if items is None else tuple(str(item) for item in items)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSettings:
    """Options for one stream of a call, over the call's own (Avro record `callstt.StreamSettings`).
    None: the call's value."""

    stream_id: str
    languages: tuple[str, ...] | None = None
    hotwords: tuple[str, ...] | None = None
    initial_prompt: str | None = None
    translate_to: tuple[str, ...] | None = None
    voice: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"stream_id": self.stream_id, "languages": _list(self.languages), "hotwords": _list(self.hotwords),
                "initial_prompt": self.initial_prompt, "translate_to": _list(self.translate_to), "voice": self.voice}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StreamSettings:
        return cls(stream_id=data["stream_id"], languages=_codes(data.get("languages")),
                   hotwords=_codes(data.get("hotwords")), initial_prompt=data.get("initial_prompt"),
                   translate_to=_codes(data.get("translate_to")), voice=data.get("voice"))


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSettings:
    """Per-call options (Avro record `callstt.CallSettings`, keyed by call_id on the compacted
    call-settings topic). None: the worker's default; an empty tuple: the option off for this call."""

    call_id: str
    languages: tuple[str, ...] | None = None
    hotwords: tuple[str, ...] | None = None
    initial_prompt: str | None = None
    redact: tuple[str, ...] | None = None
    streams: tuple[StreamSettings, ...] = ()
    updated_ts_ms: int = 0
    translate_to: tuple[str, ...] | None = None  # the translation agent's target languages
    translate_interims: bool | None = None  # also the interims' stable words (None: the agent's default)
    voice: str | None = None  # the speech agent's voice by name (None: the target language's default)

    def voice_for(self, stream_id: str) -> str | None:
        """The voice this stream's translations are spoken with (None: the language's default)."""
        stream = self.stream(stream_id)
        return stream.voice if stream is not None and stream.voice is not None else self.voice

    def targets(self, stream_id: str) -> tuple[str, ...] | None:
        """The languages this stream's transcripts are translated into (None: the agent's default)."""
        stream = self.stream(stream_id)
        return stream.translate_to if stream is not None and stream.translate_to is not None else self.translate_to

    def stream(self, stream_id: str) -> StreamSettings | None:
        return next((s for s in self.streams if s.stream_id == stream_id), None)

    def to_dict(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "languages": _list(self.languages), "hotwords": _list(self.hotwords),
                "initial_prompt": self.initial_prompt, "redact": _list(self.redact),
                "streams": [s.to_dict() for s in self.streams], "translate_to": _list(self.translate_to),
                "translate_interims": self.translate_interims, "voice": self.voice,
                "updated_ts_ms": self.updated_ts_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallSettings:
        return cls(call_id=data["call_id"], languages=_codes(data.get("languages")),
                   hotwords=_codes(data.get("hotwords")), initial_prompt=data.get("initial_prompt"),
                   redact=_codes(data.get("redact")),
                   streams=tuple(StreamSettings.from_dict(s) for s in data.get("streams") or ()),
                   updated_ts_ms=data.get("updated_ts_ms", 0), translate_to=_codes(data.get("translate_to")),
                   translate_interims=data.get("translate_interims"), voice=data.get("voice"))


def _list(items: tuple[str, ...] | None) -> list[str] | None:
    return None if items is None else list(items)


# Fixed namespace for translation ids (uuid5 of a fixed name, so it never changes).
_TRANSLATION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:callstt:translation")


def translation_id(transcript_id_: str, target_language: str) -> str:
    """The deterministic id of one transcript's translation into one language (duplicates after a
    redelivery carry the same id)."""
    return str(uuid.uuid5(_TRANSLATION_NAMESPACE, json.dumps([str(transcript_id_), str(target_language)])))


# The speech topic's chunks (the speaker's translated legs, streams/speech/core.py) number each
# utterance's chunks from utterance_index * SPEECH_SEQ_PER_UTTERANCE, so any reader can tell
# which translated utterance a chunk belongs to (100 ms chunks: more than an hour per utterance).
SPEECH_SEQ_PER_UTTERANCE = 100_000


def spoken_utterance(chunk: AudioChunk) -> tuple[str, str, int]:
    """Which translated utterance a speech chunk belongs to: (call, leg, utterance index)."""
    return chunk.call_id, chunk.stream_id, chunk.seq // SPEECH_SEQ_PER_UTTERANCE


class TranslationStatus(str, Enum):
    """What happened to a transcript (Avro enum `callstt.TranslationStatus`)."""

    OK = "OK"  # translated
    PASSTHROUGH = "PASSTHROUGH"  # already in the target language: the text unchanged
    UNSUPPORTED_PAIR = "UNSUPPORTED_PAIR"  # no configured backend translates this pair: no text


@dataclass(frozen=True, slots=True, kw_only=True)
class Translation:
    """One transcript in one target language (Avro record `callstt.Translation`): a final one, or
    (`is_final` false) the stable words of an interim transcript, with its revision."""

    translation_id: str
    transcript_id: str
    call_id: str
    stream_id: str
    utterance_index: int
    source_language: str
    target_language: str
    status: TranslationStatus
    text: str
    sentences: tuple[tuple[str, str], ...] = ()  # (source sentence, its translation)
    backend: str
    model: str = ""
    translation_ms: int = 0
    transcript_produced_ts_ms: int
    produced_ts_ms: int
    is_final: bool = True
    revision: int = 0  # the interim transcript's revision (0 for a final)

    def __post_init__(self) -> None:
        if not isinstance(self.status, TranslationStatus):
            object.__setattr__(self, "status", TranslationStatus(self.status))
        object.__setattr__(self, "sentences", tuple((str(s), str(t)) for s, t in self.sentences))

    def to_dict(self) -> dict[str, Any]:
        return {
            "translation_id": self.translation_id,
            "transcript_id": self.transcript_id,
            "call_id": self.call_id,
            "stream_id": self.stream_id,
            "utterance_index": self.utterance_index,
            "source_language": self.source_language,
            "target_language": self.target_language,
            "status": self.status.value,
            "text": self.text,
            "sentences": [{"source": source, "target": target} for source, target in self.sentences],
            "backend": self.backend,
            "model": self.model,
            "translation_ms": self.translation_ms,
            "transcript_produced_ts_ms": self.transcript_produced_ts_ms,
            "produced_ts_ms": self.produced_ts_ms,
            "is_final": self.is_final,
            "revision": self.revision,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Translation:
        return cls(
            translation_id=data["translation_id"], transcript_id=data["transcript_id"], call_id=data["call_id"],
            stream_id=data["stream_id"], utterance_index=data["utterance_index"],
            source_language=data["source_language"], target_language=data["target_language"],
            status=TranslationStatus(data["status"]), text=data["text"],
            sentences=tuple((pair["source"], pair["target"]) for pair in data.get("sentences", ())),
            backend=data["backend"], model=data.get("model", ""), translation_ms=data.get("translation_ms", 0),
            transcript_produced_ts_ms=data["transcript_produced_ts_ms"], produced_ts_ms=data["produced_ts_ms"],
            is_final=data.get("is_final", True), revision=data.get("revision", 0),
        )
