"""From a model result to a Transcript event: redaction, sentences, word timing in the stream.
(Whether there is anything to publish at all is the guard's call: models/text/guard.py.) Pure;
streams/core/pipeline.py calls it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace

from callstt.models.asr.routing import LanguageChoice
from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.text.results import TranscriptionResult, join_words
from callstt.models.text.sentences import split_sentences
from callstt.schemas.records import Transcript, TranscriptSentence, TranscriptWord, transcript_id
from callstt.streams.core.assembly import Utterance
from callstt.streams.core.redaction import RedactionConfig, redact, shown_in_interim


def redact_result(result: TranscriptionResult, config: RedactionConfig) -> tuple[TranscriptionResult, dict[str, int]]:
    """The result with what `config` redacts replaced by placeholders in its words and text (the
    segments' texts go too: only their scores are used later), and how many spans of each kind."""
    if not config.kinds or not result.words:
        return result, {}
    redaction = redact(result.words, config)
    if not redaction.counts:
        return result, {}
    segments = [replace(segment, text="") for segment in result.segments]
    return replace(result, text=redaction.text, words=list(redaction.words), segments=segments), redaction.counts


def interim_result(result: TranscriptionResult, config: RedactionConfig) -> TranscriptionResult:
    """What an interim may show of a result: its words up to the first one that redaction removes
    or could still remove (`shown_in_interim`); the final decides on the rest. Nothing it shows
    is redacted, so it carries no placeholder and no redaction count."""
    shown = shown_in_interim(result.words, config)
    if shown == len(result.words):
        return result
    words = list(result.words[:shown])
    segments = [replace(segment, text="") for segment in result.segments]
    return replace(result, text=join_words(word.text for word in words), words=words, segments=segments)


def build_transcript(utterance: Utterance, result: TranscriptionResult, choice: LanguageChoice,
                     model_version: str, redactions: Mapping[str, int] | None = None) -> Transcript:
    offset_ms = utterance.start_ms
    duration_ms = len(utterance.audio) * 1000 // SAMPLE_RATE

    def stream_ms(seconds: float) -> int:
        # Word times are relative to the utterance; clamp them inside it, then shift into the stream.
        return offset_ms + min(max(int(round(seconds * 1000)), 0), duration_ms)

    words = [TranscriptWord(text=w.text, start_ms=stream_ms(w.start), end_ms=stream_ms(w.end),
                            probability=w.probability) for w in result.words]
    sentences = [TranscriptSentence(text=s.text, start_ms=stream_ms(s.start), end_ms=stream_ms(s.end))
                 for s in split_sentences(result.words)]
    language = choice.language or result.language
    probability = choice.probability if choice.source != "model" else result.language_probability
    return Transcript(
        transcript_id=transcript_id(utterance.call_id, utterance.stream_id, utterance.index),
        call_id=utterance.call_id, stream_id=utterance.stream_id, utterance_index=utterance.index,
        is_final=True, text=result.text, language=language, language_probability=probability,
        start_ms=utterance.start_ms, end_ms=utterance.end_ms, words=words, sentences=sentences,
        model_name=result.model_name, model_version=model_version, backend=result.backend,
        avg_logprob=result.avg_logprob, no_speech_prob=result.no_speech_prob,
        last_audio_capture_ts_ms=utterance.last_capture_ts_ms,
        last_audio_received_ts_ms=utterance.last_received_ts_ms,
        produced_ts_ms=int(time.time() * 1000), timestamps_note=result.timestamps_note or None,
        redactions=dict(redactions or {}),
    )
