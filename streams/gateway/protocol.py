"""The gateway's wire protocol: Deepgram's live API (`/v1/listen`), as its clients already speak it.

Pure functions only (no socket, no Kafka): the query string of a connection becomes a typed
`ListenRequest` (or a `BadRequest` with Deepgram's error shape), and the project's records
become the JSON messages Deepgram's clients parse (`Results`, `UtteranceEnd`, `Metadata`,
`Error`), plus callstt's own (`Acknowledged`, `Resumed`, `Translation`, `Speech`), which
Deepgram's SDKs pass on as unknown messages. docs/gateway.md lists what maps and what does not.

Deepgram's `Results` for a final has `is_final` and `speech_final` both true: the worker cuts
an utterance at the end of speech, so each final ends one. An interim has both false.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from callstt.schemas.records import CallSettings, Encoding, StreamSettings, Transcript, Translation

# Deepgram's encodings of raw audio that the worker decodes (models/audio/decoding.py).
ENCODINGS = {"linear16": Encoding.PCM_S16LE, "mulaw": Encoding.MULAW, "alaw": Encoding.ALAW}
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 48000
MAX_CHANNELS = 8
DEFAULT_STREAM = "caller"  # as `callstt publish`: a call's one leg when the client names none

# What Deepgram's `redact` values ask for, in the worker's kinds (CALLSTT_REDACT_PATTERNS); the
# worker's own kind names are taken as they are.
REDACT_KINDS = {"pci": ("card",), "ssn": ("id",), "numbers": ("card", "phone", "id"),
                "true": ("card", "phone", "email", "id"), "card": ("card",), "phone": ("phone",),
                "email": ("email",), "id": ("id",)}

# Deepgram parameters the gateway accepts and does not act on (their features are the worker's
# own or absent: docs/gateway.md says which); any other unknown parameter is refused, so a typo
# is not silently ignored.
IGNORED = frozenset({"model", "version", "punctuate", "smart_format", "numerals", "profanity_filter", "diarize",
                     "diarize_model", "dictation", "filler_words", "tag", "extra", "mip_opt_out", "search",
                     "replace", "detect_entities", "callback", "callback_method", "vad_events", "no_delay",
                     "language_hint", "endpointing"})
OWN = frozenset({"encoding", "sample_rate", "channels", "multichannel", "language", "detect_language",
                 "interim_results", "utterance_end_ms", "keyterm", "keywords", "redact", "call_id", "stream_id",
                 "translate_to", "voice", "speech", "ack", "token"})

CALL_ID_PATTERN = re.compile(r"[A-Za-z0-9._:@-]{1,128}")


class BadRequest(ValueError):
    """A connection's parameters cannot be served: answered before the upgrade, as Deepgram does,
    with HTTP 400 and `{"err_code": ..., "err_msg": ...}`."""

    def __init__(self, message: str, code: str = "Bad Request") -> None:
        super().__init__(message)
        self.code = code

    def body(self, request_id: str) -> dict:
        return {"err_code": self.code, "err_msg": str(self), "request_id": request_id}


@dataclass(frozen=True)
class ListenRequest:
    """What one connection asked for."""

    encoding: Encoding
    sample_rate: int
    channels: int
    multichannel: bool
    call_id: str
    stream_ids: tuple[str, ...]  # one per channel with multichannel, else one
    languages: tuple[str, ...] | None = None  # None: the worker's default; (): detect any
    hotwords: tuple[str, ...] | None = None
    redact: tuple[str, ...] | None = None
    translate_to: tuple[str, ...] | None = None
    voice: str | None = None
    interim_results: bool = False
    utterance_end_ms: int | None = None
    speech: bool = False  # also send the synthesized speech of the translations
    ack: bool = False  # send `Acknowledged` as the broker acknowledges audio
    ignored: tuple[str, ...] = field(default=())  # Deepgram parameters accepted without effect

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample of every channel: frames are cut on this boundary."""
        return self.encoding.bytes_per_sample * self.channels

    def call_settings(self, now_ms: int) -> CallSettings | None:
        """The call's settings record this connection asks for (None: it asks for nothing)."""
        if self.languages is None and self.hotwords is None and self.redact is None and self.translate_to is None \
                and self.voice is None:
            return None
        streams = tuple(StreamSettings(stream_id=stream_id, languages=self.languages, hotwords=self.hotwords,
                                       translate_to=self.translate_to, voice=self.voice)
                        for stream_id in self.stream_ids)
        # The call's record is replaced whole by the next one (the topic is compacted by call ID):
        # this connection's values are also the call's, so another leg's connection that asks for
        # the same still finds them when its record replaced this one (docs/gateway.md).
        return CallSettings(call_id=self.call_id, languages=self.languages, hotwords=self.hotwords,
                            redact=self.redact, streams=streams, updated_ts_ms=now_ms, translate_to=self.translate_to,
                            voice=self.voice)


def _values(query: Mapping[str, Sequence[str]], name: str) -> list[str]:
    return [value for value in query.get(name, ()) if value != ""]


def _one(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = _values(query, name)
    return values[-1] if values else None


def _boolean(query: Mapping[str, Sequence[str]], name: str, default: bool = False) -> bool:
    value = _one(query, name)
    if value is None:
        return default
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name}={value!r}: use true or false")


def _integer(query: Mapping[str, Sequence[str]], name: str, low: int, high: int) -> int | None:
    value = _one(query, name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{name}={value!r} is not a whole number") from None
    if not low <= number <= high:
        raise BadRequest(f"{name}={number} is out of range ({low}..{high})")
    return number


def _list(query: Mapping[str, Sequence[str]], *names: str) -> tuple[str, ...] | None:
    """Repeated parameters and comma-separated values alike: ?a=x&a=y and ?a=x,y."""
    values = [part.strip() for name in names for value in _values(query, name) for part in value.split(",")]
    return tuple(dict.fromkeys(value for value in values if value)) if values else None


def _language(code: str) -> str:
    """Deepgram's BCP-47 tags ("en-US", "pt-BR") as the worker's ISO 639-1 codes."""
    base = code.strip().split("-")[0].lower()
    if not re.fullmatch(r"[a-z]{2,3}", base):
        raise BadRequest(f"language={code!r} is not a language code (use e.g. en, vi, pt-BR, or multi)")
    return base


def parse_listen(query: Mapping[str, Sequence[str]], new_call_id: str) -> ListenRequest:
    """A connection's query parameters (each name -> its values) as a ListenRequest; BadRequest
    names the first parameter that cannot be served. `new_call_id`: the call ID when none is given."""
    unknown = sorted(set(query) - OWN - IGNORED)
    if unknown:
        raise BadRequest(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                         "(docs/gateway.md lists what the gateway takes)")
    encoding_name = _one(query, "encoding")
    if encoding_name is None:
        raise BadRequest("encoding is required: linear16, mulaw or alaw (raw audio; containers such as "
                         "WebM or WAV are not taken)")
    if encoding_name.lower() not in ENCODINGS:
        raise BadRequest(f"encoding={encoding_name!r} is not supported: use linear16, mulaw or alaw")
    sample_rate = _integer(query, "sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
    if sample_rate is None:
        raise BadRequest("sample_rate is required with encoding (e.g. 16000, or 8000 for mulaw)")
    channels = _integer(query, "channels", 1, MAX_CHANNELS) or 1
    multichannel = _boolean(query, "multichannel")
    call_id = _one(query, "call_id") or new_call_id
    if not CALL_ID_PATTERN.fullmatch(call_id):
        raise BadRequest(f"call_id={call_id!r}: use 1-128 letters, digits and . _ : @ -")
    stream_ids = stream_names(_list(query, "stream_id"), channels if multichannel else 1)

    languages = _list(query, "language")
    if _boolean(query, "detect_language") or (languages is not None and "multi" in languages):
        languages = ()  # detection among every language the models know
    elif languages is not None:
        languages = tuple(dict.fromkeys(_language(code) for code in languages))
    redact = None
    redact_values = _list(query, "redact")
    if redact_values is not None:
        wrong = [value for value in redact_values if value.lower() not in REDACT_KINDS and value.lower() != "false"]
        if wrong:
            raise BadRequest(f"redact={wrong[0]!r}: use pci, ssn, numbers, true, or card, phone, email, id")
        redact = tuple(dict.fromkeys(kind for value in redact_values for kind in REDACT_KINDS.get(value.lower(), ())))
    keywords = _list(query, "keyterm", "keywords")
    hotwords = tuple(dict.fromkeys(word.rsplit(":", 1)[0] if re.search(r":-?\d+(\.\d+)?$", word) else word
                                   for word in keywords)) if keywords is not None else None
    translate_to = _list(query, "translate_to")
    if translate_to is not None:
        translate_to = tuple(_language(code) for code in translate_to)
    utterance_end_ms = _integer(query, "utterance_end_ms", 1000, 5000)
    return ListenRequest(
        encoding=ENCODINGS[encoding_name.lower()], sample_rate=sample_rate, channels=channels,
        multichannel=multichannel, call_id=call_id, stream_ids=stream_ids, languages=languages, hotwords=hotwords,
        redact=redact, translate_to=translate_to, voice=_one(query, "voice"),
        interim_results=_boolean(query, "interim_results"), utterance_end_ms=utterance_end_ms,
        speech=_boolean(query, "speech"), ack=_boolean(query, "ack"),
        ignored=tuple(sorted(set(query) & IGNORED)))


def stream_names(given: tuple[str, ...] | None, count: int) -> tuple[str, ...]:
    """The stream of each channel: as given (one name per channel), else `caller` for one stream
    and `ch0`, `ch1`, ... for several."""
    if given is None:
        return (DEFAULT_STREAM,) if count == 1 else tuple(f"ch{index}" for index in range(count))
    if len(given) != count:
        raise BadRequest(f"stream_id names {len(given)} stream(s) for {count} channel(s): give one per channel")
    for name in given:
        if not CALL_ID_PATTERN.fullmatch(name) or ">" in name:
            raise BadRequest(f"stream_id={name!r}: use 1-128 letters, digits and . _ : @ -")
    return given


# --- messages to the client ---------------------------------------------------------------------

def plain_word(text: str) -> str:
    """Deepgram's `word`: lower case, without the punctuation around it (`punctuated_word` keeps it)."""
    stripped = "".join(char for char in text.strip() if not unicodedata.category(char).startswith("P"))
    return stripped.lower()


def confidence(transcript: Transcript) -> float:
    """The utterance's confidence, 0..1: its words' mean probability, else exp(avg_logprob)."""
    if transcript.words:
        return round(sum(word.probability for word in transcript.words) / len(transcript.words), 4)
    return round(min(1.0, math.exp(min(0.0, transcript.avg_logprob))), 4)


def results(transcript: Transcript, channel: int, channels: int, request_id: str) -> dict:
    """A transcript (final or interim) as Deepgram's `Results` message."""
    words = [{"word": plain_word(word.text), "start": word.start_ms / 1000, "end": word.end_ms / 1000,
              "confidence": round(word.probability, 4), "punctuated_word": word.text.strip()}
             for word in transcript.words if word.text.strip()]
    return {
        "type": "Results", "channel_index": [channel, channels],
        "duration": round((transcript.end_ms - transcript.start_ms) / 1000, 3),
        "start": round(transcript.start_ms / 1000, 3),
        "is_final": transcript.is_final, "speech_final": transcript.is_final, "from_finalize": False,
        "channel": {"alternatives": [{"transcript": transcript.text.strip(), "confidence": confidence(transcript),
                                      "words": words, "languages": [transcript.language]}]},
        "metadata": {"request_id": request_id, "model_uuid": transcript.model_name,
                     "model_info": {"name": transcript.model_name, "version": transcript.model_version,
                                    "arch": transcript.backend}},
        # callstt's own: which utterance this is (a client drops a final sent twice by its id)
        "callstt": {"call_id": transcript.call_id, "stream_id": transcript.stream_id,
                    "transcript_id": transcript.transcript_id, "utterance_index": transcript.utterance_index,
                    "revision": transcript.revision, "stable_text": transcript.stable_text,
                    "redactions": dict(transcript.redactions),
                    # when the utterance's last audio reached the gateway (ms since the epoch): latency
                    "last_audio_capture_ts_ms": transcript.last_audio_capture_ts_ms},
    }


def utterance_end(transcript: Transcript, channel: int, channels: int) -> dict:
    return {"type": "UtteranceEnd", "channel": [channel, channels], "last_word_end": transcript.end_ms / 1000}


def metadata(request_id: str, created: str, duration_s: float, channels: int) -> dict:
    """The last message before the gateway closes a stream it ended (CloseStream)."""
    return {"type": "Metadata", "transaction_key": "deprecated", "request_id": request_id, "sha256": "",
            "created": created, "duration": round(duration_s, 3), "channels": channels, "models": [],
            "model_info": {}}


def error(description: str, variant: str = "Error") -> dict:
    return {"type": "Error", "variant": variant, "description": description}


def translation_message(translation: Translation, channel: int, channels: int) -> dict:
    """callstt's own: a final transcript's translation (Deepgram has none)."""
    return {"type": "Translation", "channel_index": [channel, channels], **translation.to_dict()}


def speech_message(call_id: str, stream_id: str, language: str, utterance_index: int, seq: int,
                   audio_base64: str, channel: int, channels: int) -> dict:
    """callstt's own: one chunk of a translation's synthesized speech, 16 kHz linear16, base64."""
    return {"type": "Speech", "channel_index": [channel, channels], "call_id": call_id, "stream_id": stream_id,
            "language": language, "utterance_index": utterance_index, "seq": seq, "encoding": "linear16",
            "sample_rate": 16000, "audio": audio_base64}
