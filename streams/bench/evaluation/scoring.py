"""Word error rate with Whisper's text normalizers: the one scorer tests and benchmarks share.

Normalizing first means 'I'm'/'I am' or '7:30'/'seven thirty' count as the same words.
"""

from __future__ import annotations

import jiwer
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

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
