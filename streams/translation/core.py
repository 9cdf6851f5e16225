"""From a transcript to its Translation events: which languages, and the events themselves.
Pure (the backends live in models/translation/backends.py); streams/translation/app.py drives it.

Interim transcripts are translated only for calls that ask (`translate_interims` in the call's
settings, else CALLSTT_TRANSLATE_INTERIMS), and only their *stable* words (streams/core/interims.py:
words no later revision changes), each time that prefix grows (`StablePrefixes`): translating the
unsettled tail would show words that are about to change, in two languages. Interim
translations carry the translation_id of their final and the interim's revision.

Which languages a transcript goes into: its stream's `translate_to` in the call's settings, else
the call's, else the agent's default (CALLSTT_TRANSLATE_TO); an empty list: none. A transcript
already in a target language passes through unchanged; a pair no configured backend covers
gives an UNSUPPORTED_PAIR event (no text), never a crash or a silent drop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence

from callstt.schemas.records import CallSettings, Transcript, Translation, TranslationStatus, translation_id


def targets_for(transcript: Transcript, settings: CallSettings | None, default: Sequence[str]) -> tuple[str, ...]:
    """The target languages of this transcript (lower-case ISO 639-1, in order, each once)."""
    chosen = settings.targets(transcript.stream_id) if settings is not None else None
    codes = default if chosen is None else chosen
    return tuple(dict.fromkeys(code.strip().lower() for code in codes if code.strip()))


def interims_wanted(settings: CallSettings | None, default: bool) -> bool:
    """Whether the call's interim transcripts are translated (its settings, else the agent's default)."""
    chosen = settings.translate_interims if settings is not None else None
    return default if chosen is None else chosen


class StablePrefixes:
    """How many stable words of each open utterance were translated already (in memory, the most
    recent `max_utterances`; a restart only translates a prefix once more)."""

    def __init__(self, max_utterances: int = 4096) -> None:
        self.max_utterances = max_utterances
        self.translated: OrderedDict[str, int] = OrderedDict()  # transcript_id -> stable words translated

    def grew(self, interim: Transcript) -> bool:
        """The interim's stable prefix is longer than the last translated one of its utterance
        (then it counts as translated)."""
        if interim.stable_word_count <= self.translated.get(interim.transcript_id, 0) or not interim.stable_text.strip():
            return False
        self.translated[interim.transcript_id] = interim.stable_word_count
        self.translated.move_to_end(interim.transcript_id)
        while len(self.translated) > self.max_utterances:
            self.translated.popitem(last=False)
        return True

    def close(self, final: Transcript) -> None:
        """The utterance's final came: its interims are over."""
        self.translated.pop(final.transcript_id, None)


def translate(transcript: Transcript, targets: Sequence[str], router) -> list[Translation]:
    """One Translation event per target language (`router`: models.translation.backends.TranslationRouter):
    of the text of a final, of the stable words of an interim."""
    events = []
    text = transcript.text if transcript.is_final else transcript.stable_text
    for target in targets:
        result = router.translate(text, transcript.language, target)
        events.append(Translation(
            translation_id=translation_id(transcript.transcript_id, target), transcript_id=transcript.transcript_id,
            call_id=transcript.call_id, stream_id=transcript.stream_id, utterance_index=transcript.utterance_index,
            source_language=transcript.language, target_language=target,
            status=TranslationStatus(result.status.upper()), text=result.text, sentences=result.sentences,
            backend=result.backend, model=result.model, translation_ms=int(round(result.seconds * 1000)),
            transcript_produced_ts_ms=transcript.produced_ts_ms, produced_ts_ms=int(time.time() * 1000),
            is_final=transcript.is_final, revision=transcript.revision))
    return events
