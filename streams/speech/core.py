"""From a Translation event to the AudioChunk events of its translated leg. Pure apart from the
synthesizer it is given (models/voices/synth.py: espeak-ng, which speaks most languages).

The audio goes out the way call platforms send it to us: 16 kHz PCM in 100 ms chunks
(streams/client/producer.py OWN_CHUNK_PLAN), keyed by call ID, on the leg `<stream>><language>` (e.g. `caller>pt`), so a platform plays it back with
the code it already has, and our own transcriber could listen to it. Each sentence is
synthesized and its chunks handed on before the next sentence is synthesized, so playback can
start early. Chunk numbers and times are derived from the translation itself (its utterance
index and its transcript's production time), so a translation processed twice yields the same
chunks (a platform drops them by sequence number, as the transcriber does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from callstt.schemas.records import SPEECH_SEQ_PER_UTTERANCE, AudioChunk, Translation, TranslationStatus
from callstt.streams.client.producer import OWN_CHUNK_PLAN, iter_chunks


def leg(translation: Translation) -> str:
    """The stream id of the translated leg: `caller>pt`."""
    return f"{translation.stream_id}>{translation.target_language}"


def worth_speaking(translation: Translation) -> bool:
    """A final translation with text (interim ones change within a second: not spoken)."""
    return translation.is_final and translation.status in (TranslationStatus.OK, TranslationStatus.PASSTHROUGH) and bool(translation.text.strip())


def sentences_to_speak(translation: Translation) -> list[str]:
    """The target sentences when the translation is aligned, else its whole text."""
    targets = [target for _, target in translation.sentences if target.strip()]
    return targets or [translation.text]


def speech_chunks(translation: Translation, synthesize: Callable[[str, str], np.ndarray]) -> Iterator[list[AudioChunk]]:
    """The leg's chunks, one list per sentence, each list as soon as its sentence is synthesized
    (`synthesize(text, language)` -> 16 kHz float32 samples)."""
    seq = translation.utterance_index * SPEECH_SEQ_PER_UTTERANCE
    start_ms = translation.transcript_produced_ts_ms
    for sentence in sentences_to_speak(translation):
        samples = synthesize(sentence, translation.target_language)
        chunks = [replace(chunk, end_of_stream=False)  # the leg goes on after this sentence
                  for chunk in iter_chunks(samples, translation.call_id, leg(translation), OWN_CHUNK_PLAN, start_ms,
                                       language=translation.target_language, first_seq=seq)]
        seq += len(chunks)
        start_ms += len(chunks) * OWN_CHUNK_PLAN.chunk_ms
        yield chunks
