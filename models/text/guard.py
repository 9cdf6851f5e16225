"""The guard against invented text: should a model's transcript of an utterance be kept?

Whisper writes text where nobody spoke: "Thank you.", "Thanks for watching!", subtitle
credits on silence and noise; "POP POP POP ..." or "1.0.0.0.0..." loops on tones and
noise; and it repeats itself. `judge(result, audio)` returns None to keep the transcript,
or the reason code of the first rule that drops it. The rules, in the order they are asked:

- "empty": no text or no words (the pipeline's rule so far). Catches: nothing said.
- "loop": the text's zlib compression ratio is above `max_compression_ratio` (2.4, as
  Whisper's own fallback threshold). Catches: long runs of the same tokens ("POP POP
  ...", "1.0.0.0...") on tones and noise. Cannot: short text (the ratio of a few words
  is below 1 whatever they are), loops of a long sentence said twice.
- "repetition": a word `word_run` (4) or more times in a row, or the same `ngram`
  (3-gram) `ngram_repeats` (3) or more times anywhere. Digits and number words are
  exempt from both, up to `number_run` (8) in a row ("five five five five" is a
  phone number). Catches: short loops the compression ratio misses, a sentence repeated.
  Cannot: tell them from a speaker who really says "no, no, no, no" (dropped too).
- "no_speech": Whisper's own rule, the model sure there was no speech
  (no_speech_prob > 0.6) and its decode weak (avg_logprob < -1.0). Catches: the
  model's doubtful inventions. Cannot: confident inventions (most of them).
- "low_speech_ratio": Silero VAD (models/audio/vad.py, a fresh state for the utterance)
  finds speech in less than `min_speech_ratio` (2%) of the utterance's 32 ms windows,
  a window counting as speech at probability `vad_threshold` (0.35: Silero's own
  "speech continues" level, below the endpointer's 0.5, because narrowband short
  answers score 0.45-0.7 at best). A decode that is sure of itself (avg_logprob >=
  `trust_logprob` and no_speech_prob <= `trust_no_speech_prob`) is kept anyway: the
  model heard words the VAD missed (speech deep in noise, which larger models decode).
  Catches: every invention on silence, noise, tones, DTMF, music and breathing that
  the VAD does not mistake for speech. Cannot: anything the VAD takes for speech
  (singing, babble, a TV, laughter), nor a confident invention.
- "hallucination_phrase": every sentence of the text holds one of `phrases` (media and
  subtitle credits: "thanks for watching", "subtitles by", "amara.org", ...), and the
  VAD hears speech in less than `phrase_max_speech_ratio` (50%) of the windows. Catches:
  the credits Whisper learnt from subtitled video, when the VAD was fooled a little.
  Never applied to words a caller says ("Thank you.", "Bye."): those are kept whenever
  the VAD heard speech, and dropped by "low_speech_ratio" when it heard none. Cannot:
  phrases not on the list, inventions in a language the list does not cover.

What no rule catches: a plausible, confident sentence invented over audio the VAD takes
for speech (hold music with vocals, background TV, cross-talk), or one appended to real
speech in the same utterance ("... my address. Thank you."): the guard keeps or drops
a whole utterance, it does not edit text.

Where it stands in the pipeline: the endpointer (models/audio/endpointing.py: Silero at 0.5,
at least 250 ms of voiced windows) already keeps most silence, noise and tones away from
the model. The guard is the second line, for what still reaches it: utterances the VAD
was half fooled by, loops and repeats on real audio, max-length cuts and flushes, and
paths that transcribe without the endpointer (replays, benchmarks, whole files).
streams/bench/evaluation/guard_report.py measures it on the corpus of streams/bench/evaluation/nonspeech.py.

Cost: the text rules are microseconds; the VAD runs once per utterance that passes
them, one onnxruntime call over all its windows (about 3 ms for a 2-8 s utterance and
15 ms for 11 s on one busy core). A caller that already knows the utterance's speech
ratio (its share of windows at `vad_threshold` or more) passes it as `speech_ratio`.

To use it where transcripts are made (streams/core/pipeline.py):

    reason = judge(result, utterance.audio, config)
    transcript = None if reason else build_transcript(...)   # count `reason` in a metric
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from callstt.models.audio.vad import VadState, shared_vad
from callstt.models.text.results import TranscriptionResult

REASONS = ("empty", "loop", "repetition", "no_speech", "low_speech_ratio", "hallucination_phrase")

# Credits and sign-offs Whisper learnt from subtitled video; nobody says them on a call, so a
# sentence holding one is an invention when the audio has little speech. Compared after `normalize`
# (lower case, punctuation as spaces), as substrings. Not "thank you", "bye", "you": callers say those.
HALLUCINATION_PHRASES = (
    "thanks for watching", "thank you for watching", "thank you so much for watching",
    "please subscribe", "like and subscribe", "subscribe to my channel", "see you in the next video",
    "subtitles by", "subtitled by", "captions by", "transcribed by", "transcription by",
    "translated by", "amara org", "www",
    "sous titres", "sous titrage", "untertitel", "sottotitoli", "subtítulos", "legendas pela",
    "продолжение следует", "субтитры", "ご視聴ありがとうございました", "字幕",
    "hãy subscribe", "ghiền mì gõ", "cảm ơn các bạn đã theo dõi",
)

NUMBER_WORDS = frozenset(
    "zero oh o one two three four five six seven eight nine ten eleven twelve twenty thirty forty "
    "fifty sixty seventy eighty ninety hundred thousand double triple".split())


@dataclass(frozen=True)
class GuardConfig:
    """Every threshold of the guard. A rule is off when its threshold says so (noted per field)."""

    # "low_speech_ratio" (and the phrase rule's notion of little speech)
    vad_threshold: float = 0.35  # a 32 ms window is speech at this Silero probability or more
    min_speech_ratio: float = 0.02  # share of speech windows below which text is dropped (0: off)
    trust_logprob: float = -0.5  # ... unless the decode is this sure (avg_logprob at least this)
    trust_no_speech_prob: float = 0.3  # ... and the model this sure there was speech (no_speech_prob at most)
    # "no_speech": Whisper's rule (both must hold)
    no_speech_prob: float = 0.6  # (above 1: off)
    weak_logprob: float = -1.0
    # "loop"
    max_compression_ratio: float = 2.4  # (inf: off)
    # "repetition"
    ngram: int = 3
    ngram_repeats: int = 3  # the same n-gram this many times drops the text (0: off)
    word_run: int = 4  # the same word this many times in a row drops the text (0: off)
    number_run: int = 8  # ... for digits and number words (phone numbers, PINs)
    # "hallucination_phrase"
    phrase_max_speech_ratio: float = 0.5  # the phrase rule applies below this speech ratio (0: off)
    phrases: tuple[str, ...] = HALLUCINATION_PHRASES

    @classmethod
    def whisper_rule(cls) -> "GuardConfig":
        """Only "empty" and "no_speech": the rule the pipeline had before the guard
        (streams/core/transcripts.py `is_non_speech`), for comparisons."""
        return cls(min_speech_ratio=0.0, max_compression_ratio=float("inf"), ngram_repeats=0, word_run=0,
                   phrase_max_speech_ratio=0.0)


def normalize(text: str) -> str:
    """Lower case, punctuation as spaces, single spaces (the form phrases and words are compared in)."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def compression_ratio(text: str) -> float:
    """Bytes of the text over bytes of its zlib compression, as Whisper computes it (above 2.4: a loop)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def _is_number(word: str) -> bool:
    return word.isdigit() or word in NUMBER_WORDS


def repetition(text: str, config: GuardConfig = GuardConfig()) -> bool:
    """A word `word_run` times in a row, or an n-gram `ngram_repeats` times (numbers exempt up to `number_run`)."""
    words = normalize(text).split()
    if config.word_run:
        run = 1
        for previous, word in zip(words, words[1:]):
            run = run + 1 if word == previous else 1
            if run >= (config.number_run if _is_number(word) else config.word_run):
                return True
    if config.ngram_repeats and config.ngram > 0:
        grams = Counter(tuple(words[i:i + config.ngram]) for i in range(len(words) - config.ngram + 1))
        return any(count >= config.ngram_repeats and not all(map(_is_number, gram)) for gram, count in grams.items())
    return False


def _holds(sentence: str, phrase: str) -> bool:
    """Whole words for phrases in ASCII; plain substrings otherwise (scripts written without spaces)."""
    return f" {phrase} " in f" {sentence} " if phrase.isascii() else phrase in sentence


def is_hallucination_phrase(text: str, phrases: tuple[str, ...] = HALLUCINATION_PHRASES) -> bool:
    """Every sentence of `text` holds one of `phrases` (so nothing else was said)."""
    sentences = [normalize(s) for s in re.split(r"(?<=[.!?])\s+|(?<=[。！？])", text)]
    wanted = [normalize(p) for p in phrases if normalize(p)]
    sentences = [s for s in sentences if s]
    return bool(sentences) and all(any(_holds(s, p) for p in wanted) for s in sentences)


def vad_speech_ratio(audio: np.ndarray, threshold: float = GuardConfig.vad_threshold) -> float:
    """Share of the audio's 32 ms windows that Silero scores `threshold` or more, from a fresh
    VAD state (one onnxruntime call for the whole utterance). 0.0 for audio under one window."""
    probabilities, _ = shared_vad().process(np.asarray(audio, dtype=np.float32), VadState())
    return float(np.mean(probabilities >= threshold)) if len(probabilities) else 0.0


def judge(result: TranscriptionResult, audio: np.ndarray, config: GuardConfig = GuardConfig(), *,
          speech_ratio: float | None = None) -> str | None:
    """None to keep the transcript of `audio`, or why to drop it (one of REASONS; see the module docstring).

    `audio` is the utterance the model transcribed (16 kHz mono float32); the VAD runs on it
    only when the text rules keep it, unless the caller gives its `speech_ratio` (0 to 1)."""
    if not result.text.strip() or not result.words:
        return "empty"
    if compression_ratio(result.text) > config.max_compression_ratio:
        return "loop"
    if repetition(result.text, config):
        return "repetition"
    if result.no_speech_prob > config.no_speech_prob and result.avg_logprob < config.weak_logprob:
        return "no_speech"
    if config.min_speech_ratio <= 0 and config.phrase_max_speech_ratio <= 0:
        return None
    ratio = speech_ratio if speech_ratio is not None else vad_speech_ratio(audio, config.vad_threshold)
    confident = result.avg_logprob >= config.trust_logprob and result.no_speech_prob <= config.trust_no_speech_prob
    if ratio < config.min_speech_ratio and not confident:
        return "low_speech_ratio"
    if ratio < config.phrase_max_speech_ratio and is_hallucination_phrase(result.text, config.phrases):
        return "hallucination_phrase"
    return None
