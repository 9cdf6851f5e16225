"""From a final transcript to its Translation events: which languages, and the events themselves.
Pure (the backends live in models/translation.py); streams/translation/app.py drives it.

Which languages a transcript goes into: its stream's `translate_to` in the call's settings, else
the call's, else the agent's default (CALLSTT_TRANSLATE_TO); an empty list: none. A transcript
already in a target language passes through unchanged; a pair no configured backend covers
gives an UNSUPPORTED_PAIR event (no text), never a crash or a silent drop.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from schemas.records import CallSettings, Transcript, Translation, TranslationStatus, translation_id


def targets_for(transcript: Transcript, settings: CallSettings | None, default: Sequence[str]) -> tuple[str, ...]:
    """The target languages of this transcript (lower-case ISO 639-1, in order, each once)."""
    chosen = settings.targets(transcript.stream_id) if settings is not None else None
    codes = default if chosen is None else chosen
    return tuple(dict.fromkeys(code.strip().lower() for code in codes if code.strip()))


def translate(transcript: Transcript, targets: Sequence[str], router) -> list[Translation]:
    """One Translation event per target language (`router`: models.translation.TranslationRouter)."""
    events = []
    for target in targets:
        result = router.translate(transcript.text, transcript.language, target)
        events.append(Translation(
            translation_id=translation_id(transcript.transcript_id, target), transcript_id=transcript.transcript_id,
            call_id=transcript.call_id, stream_id=transcript.stream_id, utterance_index=transcript.utterance_index,
            source_language=transcript.language, target_language=target,
            status=TranslationStatus(result.status.upper()), text=result.text, sentences=result.sentences,
            backend=result.backend, model=result.model, translation_ms=int(round(result.seconds * 1000)),
            transcript_produced_ts_ms=transcript.produced_ts_ms, produced_ts_ms=int(time.time() * 1000)))
    return events
