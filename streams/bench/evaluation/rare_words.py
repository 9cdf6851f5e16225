"""The rare-word test set: does a call's vocabulary (models/text/vocabulary.py) get names and product
words spelled right, and what does it cost the rest of the transcript?

`RARE_WORD_SET` is 16 short English sentences as an agent or a customer says them on a support call,
each with one or two words the packaged base model rarely spells right unaided: invented brand and
product names (Zyntra, Quorvex, Blissbay, ...), uncommon surnames (Kowalczyk, Nguyen-Hartley,
Okonkwo, ...) and one account term (chargeback). `HOTWORDS` is every rare word of the set, once, in
order: what a call platform would send for such a call. `measure` speaks every sentence with
espeak-ng (models/voices/synth.py; one call per sentence, cached for the process), transcribes the set
without and with a vocabulary, and reports rare-word recall and the general WER of both.

How the set was chosen (honest, not cherry-picked to a 0 % baseline): candidates were run through
the base model (int8, greedy, as the worker runs it) without and with the vocabulary.
- 3 sentences the model already gets unaided (Revolut, Gallagher, Nakamura): a vocabulary must not
  break those;
- 3 it misses with and without the vocabulary, one utterance per call (Okonkwo, Velloria,
  Szczepanski: espeak-ng says them too far from the spelling for a hint to bridge; packed, it
  misses Szczepanski and Paybrixa instead);
- the rest it misses unaided and gets with the vocabulary. Candidates whose audio came out as
  other words with and without any hint (Tramexa -> "drinks or", Ecomilo -> "Commodore") were
  left out; so were more candidates that behaved like those kept (Wojciechowski, Kaczmarek,
  Flexisave, "escrow"), to keep the set short.

What it showed (base, int8, greedy, 2 threads; rare-word recall / WER, without -> with), first as
faster-whisper's `hotwords` option, which the project then left for a written prompt
(models/text/vocabulary.py; with it: 0.17 -> 0.83 / 0.246 -> 0.103 single, 0.11 -> 0.83 / 0.222 ->
0.064 packed, nothing out of silence):
- hotwords, one utterance per call: 0.17 -> 0.83 / 0.246 -> 0.191;
- hotwords, packed: 0.11 -> 0.89 / 0.222 -> 0.064;
- the same words as a written initial prompt (`PROMPT_VOCABULARY`): 0.89 / 0.127 single,
  0.89 / 0.040 packed: the same recall, fewer stray words;
- hotwords make the model continue the list where there is no speech: on silence and on quiet
  noise it writes "Kowalczyk, Kowalczyk, ..." up to the output bound, and one sentence gets the
  same tail (zero-length words at the end of the audio). The written prompt did not do that here.

Recall counts rare-word occurrences found in the hypothesis: both texts lowercased, punctuation
dropped, a possessive "'s" dropped. A word matches as a whole word (token sequence), never as a
part of a longer word: "Zyntra" is not found in "Zyntras" or in "Nguyen-Zyntra". A hyphenated name
matches written with its hyphen, with spaces instead ("Nguyen Hartley") or run together
("NguyenHartley"); a one-word rare word must come as one word ("charge back" misses "chargeback").

General WER is streams.bench.evaluation.scoring.word_error_rate over the whole set (Whisper's English normalizer),
so rare words count in it too; the with/without difference shows what the vocabulary costs (words
the prompt pulls in, text continued after the speech ends).

`measure(..., non_speech=True)` also transcribes two clips without speech (digital silence, a
quiet comfort-noise hiss) without and with the vocabulary and reports any rare word that comes out
of them: a prompt can leak into the transcript of a silent stretch.

    from callstt.streams.bench.evaluation.rare_words import measure
    report = measure(router, mode="packed")   # default vocabulary: Vocabulary(hotwords=HOTWORDS), as a prompt
    report["with"]["recall"], report["without"]["recall"], report["with"]["wer"], report["without"]["wer"]
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from callstt.models.asr.batching import InferenceRequest, transcribe_many
from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.text.vocabulary import NO_VOCABULARY, Vocabulary
from callstt.models.voices.synth import synthesize
from callstt.streams.bench.evaluation.scoring import word_error_rate

LANGUAGE = "en"


@dataclass(frozen=True)
class RareWordItem:
    text: str
    rare_words: tuple[str, ...]


RARE_WORD_SET: tuple[RareWordItem, ...] = (
    RareWordItem("Hello, thank you for calling Zyntra support, my name is Priya.", ("Zyntra",)),
    RareWordItem("Can I speak to Mister Kowalczyk about my bill?", ("Kowalczyk",)),
    RareWordItem("The account is under the name Nguyen-Hartley.", ("Nguyen-Hartley",)),
    RareWordItem("Doctor Okonkwo referred me to your clinic.", ("Okonkwo",)),
    RareWordItem("I want to cancel my Blissbay premium subscription.", ("Blissbay",)),
    RareWordItem("Your Velloria rewards balance is twelve hundred points.", ("Velloria",)),
    RareWordItem("The Draxiflo plan includes unlimited calls.", ("Draxiflo",)),
    RareWordItem("Is Mrs Szczepanski still the account holder?", ("Szczepanski",)),
    RareWordItem("The payment went to Kelvaro Bank instead of my Zyntra wallet.", ("Kelvaro", "Zyntra")),
    RareWordItem("Agent Thorvaldsen will call you back tomorrow.", ("Thorvaldsen",)),
    RareWordItem("I upgraded to the Quorvex Pro with the Fibrelink bundle.", ("Quorvex", "Fibrelink")),
    RareWordItem("I would like to top up my Paybrixa account.", ("Paybrixa",)),
    RareWordItem("Your chargeback request was approved yesterday.", ("chargeback",)),
    RareWordItem("The transfer from Revolut has not arrived.", ("Revolut",)),
    RareWordItem("Please ask Mister Gallagher to call me.", ("Gallagher",)),
    RareWordItem("I spoke to Mister Nakamura yesterday.", ("Nakamura",)),
)

HOTWORDS: tuple[str, ...] = tuple(dict.fromkeys(word for item in RARE_WORD_SET for word in item.rare_words))
"""Every rare word of the set once, in order of first use: the call's hotword list."""

CALL_VOCABULARY = Vocabulary(hotwords=HOTWORDS)
"""What a call platform sends for this call: the hotwords alone (measure's default)."""

PROMPT_VOCABULARY = Vocabulary(
    initial_prompt="Customer support call. Names and products: " + ", ".join(HOTWORDS) + ".")
"""The same words as an initial prompt written as text, for comparing the two ways in."""


# --- matching -------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def words_of(text: str) -> list[str]:
    """Lowercased words, punctuation dropped, hyphens kept inside words, possessive 's and
    apostrophes removed: "Mr. Nguyen-Hartley's bill." -> ["mr", "nguyen-hartley", "bill"]."""
    words = []
    for token in _TOKEN.findall(text.lower().replace("\u2019", "'")):
        if token.endswith("'s"):
            token = token[:-2]
        words.append(token.replace("'", ""))
    return words


def _forms(rare_word: str) -> list[list[str]]:
    """The token sequences that count as `rare_word`: as written, and for a hyphenated word also
    split at its hyphens and run together."""
    word = words_of(rare_word)
    if len(word) != 1:
        raise ValueError(f"a rare word is one word (hyphens allowed): {rare_word!r}")
    parts = word[0].split("-")
    forms = [[word[0]]]
    if len(parts) > 1:
        forms += [parts, ["".join(parts)]]
    return forms


def count_word(hypothesis: str | list[str], rare_word: str) -> int:
    """How many times `rare_word` occurs in the hypothesis (see the module docstring for the rule)."""
    tokens = words_of(hypothesis) if isinstance(hypothesis, str) else hypothesis
    found = 0
    index = 0
    while index < len(tokens):
        for form in _forms(rare_word):
            if tokens[index:index + len(form)] == form:
                found += 1
                index += len(form)
                break
        else:
            index += 1
    return found


def rare_word_hits(item: RareWordItem, hypothesis: str) -> tuple[int, int, list[str]]:
    """(occurrences found, occurrences in the sentence, the rare words missed) for one sentence."""
    tokens = words_of(hypothesis)
    wanted = Counter(item.rare_words)
    found, missed = 0, []
    for word, count in wanted.items():
        got = min(count, count_word(tokens, word))
        found += got
        missed += [word] * (count - got)
    return found, sum(wanted.values()), missed


def leaked_words(text: str, vocabulary: Vocabulary) -> list[str]:
    """The vocabulary's words (its hotwords and the words of its prompt that are rare words of
    this set) that occur in `text`."""
    candidates = dict.fromkeys((*vocabulary.hotwords, *HOTWORDS))
    tokens = words_of(text)
    return [word for word in candidates if count_word(tokens, word)]


# --- audio ----------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def sentence_audio(text: str) -> np.ndarray:
    """`text` spoken by espeak-ng at the models' rate, synthesised once per process (read-only)."""
    audio = synthesize(text, LANGUAGE)
    audio.setflags(write=False)
    return audio


def non_speech_clips(seconds: float = 3.0) -> dict[str, np.ndarray]:
    """Audio without words, as a call has between utterances: digital silence, and a quiet
    comfort-noise hiss (white noise about -60 dBFS, fixed seed)."""
    length = int(seconds * SAMPLE_RATE)
    hiss = np.random.default_rng(20240611).standard_normal(length).astype(np.float32) * 0.001
    return {"silence": np.zeros(length, dtype=np.float32), "comfort_noise": hiss}


# --- measurement ----------------------------------------------------------------------------------

def transcribe_set(backend_or_router, vocabulary: Vocabulary = NO_VOCABULARY, mode: str = "single",
                   items: tuple[RareWordItem, ...] = RARE_WORD_SET) -> list[str]:
    """The hypotheses for `items`, all sent in one models.asr.batching.transcribe_many (so "packed"
    shares windows between sentences: one call, one vocabulary)."""
    requests = [InferenceRequest(sentence_audio(item.text), LANGUAGE, vocabulary) for item in items]
    return [result.text for result in transcribe_many(backend_or_router, requests, mode=mode)]


def score(hypotheses: list[str], items: tuple[RareWordItem, ...] = RARE_WORD_SET) -> dict:
    """Rare-word recall and general WER of hypotheses for `items` (in order)."""
    if len(hypotheses) != len(items):
        raise ValueError(f"{len(items)} sentences but {len(hypotheses)} hypotheses")
    found = total = 0
    missed: list[str] = []
    for item, hypothesis in zip(items, hypotheses):
        hit, count, miss = rare_word_hits(item, hypothesis)
        found, total, missed = found + hit, total + count, missed + miss
    return {
        "recall": round(found / total, 4) if total else 0.0,
        "found": found,
        "occurrences": total,
        "missed": missed,
        "wer": round(word_error_rate([item.text for item in items], hypotheses, LANGUAGE), 4),
    }


def measure(backend_or_router, mode: str = "single", vocabulary: Vocabulary | None = None,
            non_speech: bool = True, items: tuple[RareWordItem, ...] = RARE_WORD_SET) -> dict:
    """Rare-word recall and general WER of the set without and with `vocabulary`
    (default `CALL_VOCABULARY`), transcribed as `mode` says ("single", "batched" or "packed",
    models.asr.batching.transcribe_many). A JSON-ready dict:

        {"mode", "sentences", "vocabulary": {"hotwords", "initial_prompt"},
         "without": {"recall", "found", "occurrences", "missed", "wer", "seconds"},
         "with": {...}, "recall_gain", "wer_change",
         "non_speech": {"without": {clip: text}, "with": {clip: text}, "leaked": [words]},
         "sentences_detail": [{"text", "rare_words", "without", "with"}]}

    `wer_change` is with minus without (negative: the vocabulary helped the whole transcript too).
    With `non_speech`, two clips without speech are transcribed one at a time both ways;
    "leaked" lists the set's rare words that came out of them with the vocabulary.
    """
    vocabulary = CALL_VOCABULARY if vocabulary is None else vocabulary
    if not vocabulary:
        raise ValueError("measure needs a non-empty vocabulary to compare with no vocabulary")
    report: dict = {
        "mode": mode,
        "sentences": len(items),
        "vocabulary": {"hotwords": list(vocabulary.hotwords), "initial_prompt": vocabulary.initial_prompt},
    }
    hypotheses: dict[str, list[str]] = {}
    for name, used in (("without", NO_VOCABULARY), ("with", vocabulary)):
        for item in items:
            sentence_audio(item.text)  # synthesis is not model time
        started = time.perf_counter()
        hypotheses[name] = transcribe_set(backend_or_router, used, mode, items)
        report[name] = score(hypotheses[name], items) | {"seconds": round(time.perf_counter() - started, 2)}
    report["recall_gain"] = round(report["with"]["recall"] - report["without"]["recall"], 4)
    report["wer_change"] = round(report["with"]["wer"] - report["without"]["wer"], 4)
    if non_speech:
        clips = non_speech_clips()
        texts = {}
        for name, used in (("without", NO_VOCABULARY), ("with", vocabulary)):
            results = transcribe_many(backend_or_router, [InferenceRequest(audio, LANGUAGE, used)
                                                          for audio in clips.values()], mode="single")
            texts[name] = {clip: result.text for clip, result in zip(clips, results)}
        leaked = sorted({word for text in texts["with"].values() for word in leaked_words(text, vocabulary)})
        report["non_speech"] = texts | {"leaked": leaked}
    report["sentences_detail"] = [
        {"text": item.text, "rare_words": list(item.rare_words), "without": without, "with": with_}
        for item, without, with_ in zip(items, hypotheses["without"], hypotheses["with"])
    ]
    return report
