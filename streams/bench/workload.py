"""The bench's workload: calls synthesized with espeak-ng (English and Vietnamese, fixed seed),
sentences with silences between them, as telephone audio (8 kHz mu-law, 20 ms chunks)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

CHUNK_MS = 20
SAMPLE_RATE = 8000  # telephone audio, mu-law, as the demo sends
ENCODING = "MULAW"


@dataclass
class BenchCall:
    """One generated call: a single stream of sentences with silences between them."""

    name: str
    language: str
    sentences: list[str]
    samples: np.ndarray = field(repr=False)  # SAMPLE_RATE mono float32
    speech_s: float = 0.0

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


class Synth:
    """espeak-ng with a cache: each distinct sentence is synthesized once."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str], np.ndarray] = {}

    def __call__(self, text: str, language: str) -> np.ndarray:
        from models.synth import synthesize

        key = (text, language)
        if key not in self.cache:
            self.cache[key] = synthesize(text, language, sample_rate=SAMPLE_RATE)
        return self.cache[key]


def make_call(name: str, language: str, rng: random.Random, synth: Synth, sentences: int,
              silence_s: tuple[float, float], lead_s: float = 0.5, min_seconds: float = 0.0) -> BenchCall:
    """A call of `sentences` sentences (or enough to last `min_seconds`), silences drawn from `silence_s`."""
    from models.synth import ENGLISH_SENTENCES, VIETNAMESE_SENTENCES

    pool = ENGLISH_SENTENCES if language == "en" else VIETNAMESE_SENTENCES
    pieces = [np.zeros(int(lead_s * SAMPLE_RATE), dtype=np.float32)]
    chosen: list[str] = []
    speech = 0.0
    total = lead_s
    while len(chosen) < sentences or total < min_seconds:
        text = rng.choice(pool)
        audio = synth(text, language)
        gap = rng.uniform(*silence_s)
        pieces += [audio, np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32)]
        chosen.append(text)
        speech += len(audio) / SAMPLE_RATE
        total += len(audio) / SAMPLE_RATE + gap
    return BenchCall(name, language, chosen, np.concatenate(pieces), speech)


def make_workload(seed: int, english: int, vietnamese: int, sentences: int,
                  silence_s: tuple[float, float], synth: Synth, min_seconds: float = 0.0,
                  prefix: str = "call") -> list[BenchCall]:
    rng = random.Random(seed)
    languages = ["en"] * english + ["vi"] * vietnamese
    return [make_call(f"{prefix}{index}-{language}", language, rng, synth, sentences, silence_s,
                      min_seconds=min_seconds)
            for index, language in enumerate(languages)]
