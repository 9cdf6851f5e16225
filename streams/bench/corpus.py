"""The speech the bench measures with: real recordings with reference transcripts (a folder with
a manifest.tsv, by default ../shared/speech, which may be absent), or the bench's espeak-ng
sentences in their place; each as audio at the rate a section needs, or as a phone line carries it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from callstt.models.audio.decoding import SAMPLE_RATE, decode_chunk
from callstt.models.voices.synth import ENGLISH_SENTENCES, VIETNAMESE_SENTENCES, synthesize
from callstt.streams.client.producer import encode_samples, load_audio

DEFAULT_SPEECH_DIR = Path("../shared/speech")
TELEPHONE_RATE = 8000  # telephone audio, G.711 mu-law, as the demo sends
TELEPHONE_ENCODING = "MULAW"


@dataclass(frozen=True)
class SpeechClip:
    """One recording and what was said: `name` (the file's stem, unique: the call ID's tail),
    `path` (None: synthesized from `reference` with espeak-ng)."""

    name: str
    language: str
    reference: str
    source: str
    path: Path | None = None


def default_speech_dir() -> Path | None:
    """`../shared/speech` relative to the working directory, when it holds a manifest."""
    return DEFAULT_SPEECH_DIR if (DEFAULT_SPEECH_DIR / "manifest.tsv").is_file() else None


def load_speech(directory: Path | str | None) -> list[SpeechClip] | None:
    """The clips `directory/manifest.tsv` lists (audio path, language, reference, source; tab
    separated, no header), in its order; None when there is no manifest, [] when it lists nothing."""
    if directory is None:
        return None
    root = Path(directory)
    manifest = root / "manifest.tsv"
    if not manifest.is_file():
        return None
    clips = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) < 3:
            raise ValueError(f"{manifest}:{number}: expected path, language, reference (tab separated)")
        path = root / columns[0].strip()
        clips.append(SpeechClip(name=path.stem, language=columns[1].strip().lower(), reference=columns[2].strip(),
                                source=columns[3].strip() if len(columns) > 3 else "", path=path))
    return clips


def select(clips: Sequence[SpeechClip], per_language: Mapping[str, int] | int | None) -> list[SpeechClip]:
    """In manifest order, the first N clips of each language `per_language` names (a mapping), at most
    N of every language (a number), or all (None)."""
    if per_language is None:
        return list(clips)
    taken: Counter = Counter()
    chosen = []
    for clip in clips:
        limit = per_language if isinstance(per_language, int) else per_language.get(clip.language, 0)
        if taken[clip.language] < limit:
            taken[clip.language] += 1
            chosen.append(clip)
    return chosen


def synthesized_clips(english: int | None = None, vietnamese: int | None = None) -> list[SpeechClip]:
    """The bench's espeak sentences (models.voices.synth) as clips: the first N of each language (None: all)."""
    clips = []
    for language, sentences, count in (("en", ENGLISH_SENTENCES, english), ("vi", VIETNAMESE_SENTENCES, vietnamese)):
        for index, sentence in enumerate(sentences[:count]):
            clips.append(SpeechClip(f"espeak_{language}_{index}", language, sentence, "espeak-ng (models.voices.synth)"))
    return clips


def clip_audio(clip: SpeechClip, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The clip as mono float32 at `sample_rate` (the file resampled by PyAV, or espeak-ng's speech)."""
    if clip.path is None:
        return synthesize(clip.reference, clip.language, sample_rate=sample_rate)
    return load_audio(clip.path, sample_rate)


def telephone_band(samples_8k: np.ndarray) -> np.ndarray:
    """8 kHz audio as a phone call carries it: G.711 mu-law, then decoded and resampled to 16 kHz by
    the worker's own decoder (models.audio.decoding), what the model sees of a telephone call."""
    payload = encode_samples(samples_8k, TELEPHONE_ENCODING)
    return decode_chunk(payload, TELEPHONE_ENCODING, TELEPHONE_RATE, 1,
                        max_chunk_ms=len(samples_8k) * 1000 / TELEPHONE_RATE + 1, end_of_stream=True)
