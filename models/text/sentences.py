"""Sentence segmentation of a transcription: punctuation first, long pauses between words second."""

from __future__ import annotations

from dataclasses import dataclass

from callstt.models.text.results import Word

SENTENCE_END = (".", "?", "!", "。", "？", "！", "…")


@dataclass(frozen=True)
class Sentence:
    text: str
    start: float
    end: float


def split_sentences(words: list[Word], pause_s: float = 0.8) -> list[Sentence]:
    """Group words into sentences: a word ending in sentence punctuation closes one, and so
    does a pause longer than `pause_s` before the next word (speech often comes unpunctuated)."""
    sentences: list[Sentence] = []
    current: list[Word] = []
    for index, word in enumerate(words):
        current.append(word)
        next_word = words[index + 1] if index + 1 < len(words) else None
        ends_sentence = word.text.rstrip("\"')»”").endswith(SENTENCE_END)
        long_pause = next_word is not None and next_word.start - word.end > pause_s
        if next_word is None or ends_sentence or long_pause:
            sentences.append(Sentence(text=" ".join(w.text for w in current),
                                      start=current[0].start, end=current[-1].end))
            current = []
    return sentences
