"""What applies to one stream of a call: the call's own settings (the `CallSettings` record from the
compacted call-settings topic, kept in the worker's table under `C|<call>`), over the worker's
defaults. Pure; streams/core/pipeline.py asks for a stream's options when its utterance meets the
model.

    options = resolve(call_settings, "caller", defaults)   # call_settings may be None
    options.languages, options.vocabulary, options.redaction

Rule for every option: the stream's value, else the call's, else the worker's default; None
means "not set here", an empty list switches the option off (see schemas/call_settings.avsc).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

from callstt.models.text.vocabulary import NO_VOCABULARY, Vocabulary
from callstt.schemas.records import CallSettings
from callstt.streams.core.redaction import RedactionConfig


def settings_key(call_id: str) -> str:
    """The table key of a call's settings (beside `S|` stream states and `A|` audio blocks)."""
    return f"C|{call_id}"


def settings_expired(settings: CallSettings, now_ms: int, ttl_ms: float) -> bool:
    """Settings set more than `ttl_ms` ago (CALLSTT_CALL_SETTINGS_TTL_S): the worker forgets them,
    as the call-settings topic's retention does; settings without a time never expire."""
    return settings.updated_ts_ms > 0 and now_ms - settings.updated_ts_ms >= ttl_ms


@dataclass(frozen=True)
class CallDefaults:
    """The worker's defaults (CALLSTT_LANGUAGES, CALLSTT_HOTWORDS, CALLSTT_INITIAL_PROMPT,
    CALLSTT_REDACT with its patterns and phone region)."""

    languages: tuple[str, ...] = ()
    vocabulary: Vocabulary = NO_VOCABULARY
    redaction: RedactionConfig = field(default_factory=RedactionConfig)


@dataclass(frozen=True)
class StreamOptions:
    languages: tuple[str, ...]
    vocabulary: Vocabulary
    redaction: RedactionConfig


def resolve(call: CallSettings | None, stream_id: str, defaults: CallDefaults) -> StreamOptions:
    if call is None:
        return StreamOptions(defaults.languages, defaults.vocabulary, defaults.redaction)
    stream = call.stream(stream_id)

    def pick(name: str, default):
        for source in (stream, call):
            value = getattr(source, name, None) if source is not None else None
            if value is not None:
                return value
        return default

    languages = tuple(code.lower() for code in pick("languages", defaults.languages))
    vocabulary = Vocabulary(hotwords=tuple(pick("hotwords", defaults.vocabulary.hotwords)),
                            initial_prompt=pick("initial_prompt", defaults.vocabulary.initial_prompt))
    redaction = defaults.redaction if call.redact is None else replace(defaults.redaction,
                                                                       kinds=redaction_kinds(call.redact))
    return StreamOptions(languages, vocabulary, redaction)


@lru_cache(maxsize=256)
def redaction_kinds(redact: tuple[str, ...]):
    """A call's `redact` list as checked kinds (parsed once per distinct list, not per utterance)."""
    return RedactionConfig.parse(",".join(redact)).kinds
