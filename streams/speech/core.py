"""From a Translation event to the AudioChunk events of its translated leg. Pure apart from the
synthesizer it is given (models/voices/synth.py: espeak-ng, which speaks most languages).

The audio goes out the way call platforms send it to us: 16 kHz PCM in CHUNK_MS chunks, keyed by
call ID, on the leg `<stream>><language>` (e.g. `caller>pt`), so a platform plays it back with
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

from models.audio.decoding import SAMPLE_RATE
from schemas.records import AudioChunk, Translation, TranslationStatus
from streams.client.producer import ChunkPlan, iter_chunks

CHUNK_MS = 100
# Sequence numbers per utterance: an utterance's chunks never reach the next one's (100 ms
# chunks: more than an hour of speech).
SEQ_PER_UTTERANCE = 100_000
PLAN = ChunkPlan(SAMPLE_RATE, "PCM_S16LE", CHUNK_MS)


def spoken_utterance(chunk: AudioChunk) -> tuple[str, str, int]:
    """Which translated utterance a speech chunk belongs to: (call, leg, utterance index)."""
    return chunk.call_id, chunk.stream_id, chunk.seq // SEQ_PER_UTTERANCE


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
    seq = translation.utterance_index * SEQ_PER_UTTERANCE
    start_ms = translation.transcript_produced_ts_ms
    for sentence in sentences_to_speak(translation):
        samples = synthesize(sentence, translation.target_language)
        chunks = [replace(chunk, end_of_stream=False)  # the leg goes on after this sentence
                  for chunk in iter_chunks(samples, translation.call_id, leg(translation), PLAN, start_ms,
                                       language=translation.target_language, first_seq=seq)]
        seq += len(chunks)
        start_ms += len(chunks) * CHUNK_MS
        yield chunks
