"""The bench's workloads (fixed seeds). For the pipeline section: calls synthesized with espeak-ng
(English and Vietnamese), sentences with silences between them, as telephone audio (8 kHz
mu-law, 20 ms chunks). For the live runs: conversations, two participants taking turns with
real recordings (../shared/speech) when there, at 16 kHz PCM or 8 kHz G.711; and one speaker's
sentences with 1-2 s pauses between them (16 kHz PCM, one stream per call), where each final
is followed by more speech soon after."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.voices.synth import ENGLISH_SENTENCES, VIETNAMESE_SENTENCES, synthesize
from callstt.streams.bench.corpus import TELEPHONE_ENCODING, TELEPHONE_RATE, clip_audio, load_speech

ENCODING = TELEPHONE_ENCODING  # the pipeline section's calls: telephone audio, as the demo sends


@dataclass
class BenchCall:
    """One generated call: a single stream of sentences with silences between them."""

    name: str
    language: str
    sentences: list[str]
    samples: np.ndarray = field(repr=False)  # TELEPHONE_RATE mono float32
    speech_s: float = 0.0

    @property
    def seconds(self) -> float:
        return len(self.samples) / TELEPHONE_RATE


class Synth:
    """espeak-ng with a cache: each distinct sentence is synthesized once."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, str], np.ndarray] = {}

    def __call__(self, text: str, language: str) -> np.ndarray:
        key = (text, language)
        if key not in self.cache:
            self.cache[key] = synthesize(text, language, sample_rate=TELEPHONE_RATE)
        return self.cache[key]


def make_call(name: str, language: str, rng: random.Random, synth: Synth, sentences: int,
              silence_s: tuple[float, float], lead_s: float = 0.5, min_seconds: float = 0.0) -> BenchCall:
    """A call of `sentences` sentences (or enough to last `min_seconds`), silences drawn from `silence_s`."""
    pool = ENGLISH_SENTENCES if language == "en" else VIETNAMESE_SENTENCES
    pieces = [np.zeros(int(lead_s * TELEPHONE_RATE), dtype=np.float32)]
    chosen: list[str] = []
    speech = 0.0
    total = lead_s
    while len(chosen) < sentences or total < min_seconds:
        text = rng.choice(pool)
        audio = synth(text, language)
        gap = rng.uniform(*silence_s)
        pieces += [audio, np.zeros(int(gap * TELEPHONE_RATE), dtype=np.float32)]
        chosen.append(text)
        speech += len(audio) / TELEPHONE_RATE
        total += len(audio) / TELEPHONE_RATE + gap
    return BenchCall(name, language, chosen, np.concatenate(pieces), speech)


def make_workload(seed: int, english: int, vietnamese: int, sentences: int,
                  silence_s: tuple[float, float], synth: Synth, min_seconds: float = 0.0,
                  prefix: str = "call") -> list[BenchCall]:
    rng = random.Random(seed)
    languages = ["en"] * english + ["vi"] * vietnamese
    return [make_call(f"{prefix}{index}-{language}", language, rng, synth, sentences, silence_s,
                      min_seconds=min_seconds)
            for index, language in enumerate(languages)]


# --- the live workload: conversations ------------------------------------------------------------

@dataclass(frozen=True)
class SpeechSource:
    """One thing a participant says: its text, language and audio (mono float32, by sample rate:
    16 kHz and 8 kHz, each made from the source by PyAV or espeak-ng, not by the worker's decoder)."""

    text: str
    language: str
    audio: dict[int, np.ndarray] = field(repr=False)
    real: bool = False  # a human recording (../shared/speech), not espeak

    @property
    def seconds(self) -> float:
        return len(self.audio[SAMPLE_RATE]) / SAMPLE_RATE


@dataclass
class Turn:
    stream_id: str
    source: SpeechSource
    start_s: float
    seconds: float


@dataclass
class Conversation:
    """One call as contact centres have them: two participants (`caller`, `agent`, each its own
    stream under the call's key) taking turns, both streams at the call's rate and encoding
    (16 kHz PCM or 8 kHz G.711 mu-law) for the whole call."""

    name: str
    language: str
    sample_rate: int
    encoding: str
    seconds: float
    turns: list[Turn]
    streams: tuple[str, ...] = ("caller", "agent")

    @property
    def speech_s(self) -> float:
        """Time someone is speaking (turns do not overlap)."""
        return sum(turn.seconds for turn in self.turns)

    def stream_audio(self, stream_id: str) -> np.ndarray:
        """The stream's samples at the call's rate: its turns, silence in between."""
        audio = np.zeros(int(self.seconds * self.sample_rate), dtype=np.float32)
        for turn in self.turns:
            if turn.stream_id != stream_id:
                continue
            samples = turn.source.audio[self.sample_rate]
            start = int(turn.start_s * self.sample_rate)
            audio[start:start + len(samples)] = samples[:len(audio) - start]
        return audio

    def references(self, stream_id: str) -> str:
        return " ".join(turn.source.text for turn in self.turns if turn.stream_id == stream_id)


def speech_sources(speech_dir=None) -> dict[str, list[SpeechSource]]:
    """What participants say, by language (en, vi): the real recordings of `speech_dir` (None: none)
    when there (clips up to 12 s), else espeak-ng's voice for the project's sentences."""
    sources: dict[str, list[SpeechSource]] = {"en": [], "vi": []}
    for clip in load_speech(speech_dir) or []:
        if clip.language in sources:
            audio = clip_audio(clip)
            if len(audio) <= 12 * SAMPLE_RATE:
                sources[clip.language].append(SpeechSource(
                    clip.reference, clip.language, {SAMPLE_RATE: audio, TELEPHONE_RATE: clip_audio(clip, TELEPHONE_RATE)},
                    real=True))
    for language, sentences in (("en", ENGLISH_SENTENCES), ("vi", VIETNAMESE_SENTENCES)):
        if not sources[language]:
            sources[language] = [SpeechSource(text, language, {rate: synthesize(text, language, sample_rate=rate)
                                                               for rate in (SAMPLE_RATE, TELEPHONE_RATE)})
                                 for text in sentences]
    return sources


def make_conversation(name: str, language: str, sources: list[SpeechSource], rng: random.Random,
                      min_seconds: float, sample_rate: int, gap_s: tuple[float, float] = (0.6, 2.2),
                      lead_s: float = 0.5) -> Conversation:
    """Turns alternate between caller and agent, one utterance each, `gap_s` of silence between
    turns (speech about 60-80% of the call), until the call lasts `min_seconds` and both spoke."""
    return _turns(name, language, sources, rng, min_seconds, sample_rate, gap_s, lead_s, Conversation.streams)


def make_monologue(name: str, language: str, sources: list[SpeechSource], rng: random.Random,
                   min_seconds: float, gap_s: tuple[float, float] = (1.0, 2.0), lead_s: float = 0.5) -> Conversation:
    """One speaker (stream `caller`), 16 kHz PCM: sentences with `gap_s` pauses between them, so
    that each sentence's final is due while the next one is already being spoken."""
    return _turns(name, language, sources, rng, min_seconds, SAMPLE_RATE, gap_s, lead_s, ("caller",))


def _turns(name: str, language: str, sources: list[SpeechSource], rng: random.Random, min_seconds: float,
           sample_rate: int, gap_s: tuple[float, float], lead_s: float, streams: tuple[str, ...]) -> Conversation:
    """Utterances drawn from `sources`, the streams speaking in turn, `gap_s` of silence between
    them, until the call lasts `min_seconds`, every stream spoke and there were two utterances at least."""
    turns, cursor = [], lead_s
    while cursor < min_seconds or len(turns) < max(2, len(streams)):
        source = rng.choice(sources)
        turns.append(Turn(streams[len(turns) % len(streams)], source, cursor, source.seconds))
        cursor += source.seconds + rng.uniform(*gap_s)
    encoding = "PCM_S16LE" if sample_rate == SAMPLE_RATE else "MULAW"
    return Conversation(name, language, sample_rate, encoding, cursor + 1.0, turns, streams)


def make_monologues(seed: int, count: int, min_seconds: float, sources: dict[str, list[SpeechSource]],
                    prefix: str = "pauses") -> list[Conversation]:
    """`count` English calls of one speaker's sentences with pauses (`make_monologue`)."""
    rng = random.Random(seed)
    return [make_monologue(f"{prefix}{index}-en-16k", "en", sources["en"], rng, min_seconds) for index in range(count)]


def make_conversations(seed: int, count: int, min_seconds: float, sources: dict[str, list[SpeechSource]],
                       prefix: str = "conv") -> list[Conversation]:
    """`count` conversations: three in four English, one in four Vietnamese; alternately 8 kHz
    G.711 mu-law (a phone line) and 16 kHz PCM (a softphone)."""
    rng = random.Random(seed)
    calls = []
    for index in range(count):
        language = "vi" if index % 4 == 3 else "en"
        rate = TELEPHONE_RATE if index % 2 == 0 else SAMPLE_RATE
        calls.append(make_conversation(f"{prefix}{index}-{language}-{rate // 1000}k", language, sources[language],
                                       rng, min_seconds, rate))
    return calls
