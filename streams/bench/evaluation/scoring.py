"""Word error rate with Whisper's text normalizers: the one scorer tests and benchmarks share.

Normalizing first means 'I'm'/'I am' or '7:30'/'seven thirty' count as the same words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jiwer
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

# Scripts written without spaces between words: scored by characters.
CER_LANGUAGES = frozenset({"ja", "zh", "yue", "th", "lo", "my", "km"})

_english = EnglishTextNormalizer()
_basic = BasicTextNormalizer()


def normalize(text: str, language: str = "en") -> str:
    return _english(text) if language == "en" else _basic(text)


def word_error_rate(reference: str | list[str], hypothesis: str | list[str], language: str = "en") -> float:
    """WER of hypothesis against reference after normalization (lists are joined per item pairs)."""
    references = [reference] if isinstance(reference, str) else list(reference)
    hypotheses = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    references = [normalize(text, language) for text in references]
    hypotheses = [normalize(text, language) for text in hypotheses]
    if not any(ref.split() for ref in references):
        raise ValueError("the reference has no words to score against")
    # jiwer refuses empty reference strings; score only the pairs that have a reference.
    pairs = [(r, h) for r, h in zip(references, hypotheses) if r.split()]
    return jiwer.wer([r for r, _ in pairs], [h for _, h in pairs])


def _digits_apart(text: str) -> str:
    """"2934" -> "2 9 3 4": the normaliser joins spoken digit strings ("two nine three four") into one
    number and Whisper groups them as it likes ("29 34"); scored digit by digit, both agree. A hyphen
    between digits ("1-0-0-0-1") counts as a space."""
    return " ".join(re.sub(r"(\d)", r" \1 ", re.sub(r"(?<=\d)-(?=\d)", " ", text)).split())


def error_rate(language: str, references: Sequence[str], hypotheses: Sequence[str]) -> tuple[str, float | None]:
    """("wer" or "cer", the rate over all pairs): Whisper's normalisers (English for en), digits
    scored one by one; characters without spaces for CER_LANGUAGES. None without a reference word."""
    pairs = [(_digits_apart(normalize(r, language)), _digits_apart(normalize(h, language)))
             for r, h in zip(references, hypotheses)]
    if language in CER_LANGUAGES:
        pairs = [("".join(r.split()), "".join(h.split())) for r, h in pairs]
        pairs = [(r, h) for r, h in pairs if r]
        return "cer", (jiwer.cer([r for r, _ in pairs], [h for _, h in pairs]) if pairs else None)
    pairs = [(r, h) for r, h in pairs if r.split()]
    return "wer", (jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]) if pairs else None)
