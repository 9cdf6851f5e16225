"""A stream's language: decided from its first utterances together, kept once confident, and
detected again when the stream stops fitting it.

Whisper's language detection is unreliable on one short utterance (real English half a second
long comes out as Chinese, a clip cut in three as ru, fr, ru), and a wrong language ruins the
whole transcript. So a stream does not trust one utterance: every detection's distribution is
pooled, weighted by the utterance's seconds of audio, and each utterance is transcribed in
the pool's leading language: the pool's best, which takes the lead from the language before
it only with SWITCH_MARGIN times its weight (short digit strings of an English caller sound
Chinese to the model one at a time; the lead should not flip on one of them). Once the pool
holds COMMIT_SECONDS of audio and the leading language has at least COMMIT_PROBABILITY of it,
the stream commits to that language and
later utterances skip detection (the cheap, common case). A committed stream whose decodes
turn weak (WEAK_DECODES in a row with an average log-probability under WEAK_LOGPROB, e.g. the
caller switched language, or a new speaker joined the leg) goes back to detecting, with the
old evidence halved, so a new language must outweigh it before it takes over.

    evidence = LanguageEvidence()                            # a new stream
    evidence = evidence.pooled_with(ranking, seconds)        # after a detection
    language, share = evidence.best()
    evidence = evidence.after_decode(avg_logprob, speech=True)

The evidence is small (the top POOL_SIZE languages) and lives in the stream's state
(streams/core/assembly.py StreamState.language_*), so it survives restarts and rebalances.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

COMMIT_SECONDS = 4.0  # audio pooled before a stream commits to a language
COMMIT_PROBABILITY = 0.7  # the best language's share of the pool needed to commit
MAX_UTTERANCE_WEIGHT_S = 10.0  # one long utterance cannot outvote everything else
WEAK_LOGPROB = -1.0  # a decode this weak in the committed language counts against it
WEAK_DECODES = 2  # consecutive weak decodes before the stream detects again
POOL_SIZE = 6  # languages kept in the pool (the rest of Whisper's 99 carry ~nothing)
SWITCH_MARGIN = 1.5  # how much more weight a language needs to take the lead from the leading one


@dataclass(frozen=True)
class LanguageEvidence:
    committed: str = ""  # the stream's language once confident; "" while still deciding
    probability: float = 0.0  # the committed language's share of the pool
    pool: tuple[tuple[str, float], ...] = ()  # (language, seconds-weighted probability), best first
    seconds: float = 0.0  # audio pooled
    weak: int = 0  # consecutive weak decodes in the committed language
    leading: str = ""  # the language utterances are transcribed in while deciding

    def pooled_with(self, ranking: Iterable[tuple[str, float]], seconds: float) -> "LanguageEvidence":
        """The pool after one more detection (`ranking`: (language, probability) pairs summing to
        about 1, from an utterance of `seconds`), committed when it is sure enough."""
        weight = min(max(seconds, 0.0), MAX_UTTERANCE_WEIGHT_S)
        totals = dict(self.pool)
        for language, probability in ranking:
            totals[language] = totals.get(language, 0.0) + weight * float(probability)
        pool = tuple(sorted(totals.items(), key=lambda item: -item[1])[:POOL_SIZE])
        best, best_weight = pool[0] if pool else ("", 0.0)
        keep = self.leading and best_weight < SWITCH_MARGIN * totals.get(self.leading, 0.0)
        evidence = replace(self, pool=pool, seconds=self.seconds + weight, leading=self.leading if keep else best)
        language, share = evidence.best()
        if evidence.seconds >= COMMIT_SECONDS and share >= COMMIT_PROBABILITY:
            evidence = replace(evidence, committed=language, probability=share, weak=0)
        return evidence

    def restricted(self, allowed) -> "LanguageEvidence":
        """The pool masked to the `allowed` languages and renormalised (as detection is, in
        models.asr.routing.allowed_ranking); a committed language outside them is dropped."""
        if not allowed:
            return self
        kept = [(language, weight) for language, weight in self.pool if language in allowed]
        total = sum(weight for _, weight in kept)
        if not kept or total <= 0:
            return LanguageEvidence()
        scale = self.seconds / total
        committed = self.committed if self.committed in allowed else ""
        return replace(self, committed=committed, probability=self.probability if committed else 0.0,
                       pool=tuple((language, weight * scale) for language, weight in kept),
                       leading=self.leading if self.leading in allowed else "")

    def best(self) -> tuple[str, float]:
        """The leading language and its share of the pooled audio ("", 0 when nothing is pooled)."""
        if not self.pool or self.seconds <= 0:
            return "", 0.0
        weights = dict(self.pool)
        language = self.leading if self.leading in weights else self.pool[0][0]
        return language, min(weights[language] / self.seconds, 1.0)

    def after_decode(self, avg_logprob: float, speech: bool) -> "LanguageEvidence":
        """Count a decode in the committed language; enough weak ones in a row send the stream
        back to detecting, with its old evidence halved."""
        if not self.committed or not speech:
            return self
        if avg_logprob >= WEAK_LOGPROB:
            return replace(self, weak=0)
        if self.weak + 1 < WEAK_DECODES:
            return replace(self, weak=self.weak + 1)
        return LanguageEvidence(pool=tuple((language, weight / 2) for language, weight in self.pool),
                                seconds=self.seconds / 2, leading=self.committed)

    def to_dict(self) -> dict:
        return {"committed": self.committed, "probability": self.probability,
                "pool": [list(item) for item in self.pool], "seconds": self.seconds, "weak": self.weak,
                "leading": self.leading}

    @classmethod
    def from_dict(cls, data: dict | None) -> "LanguageEvidence":
        if not data:
            return cls()
        return cls(committed=data.get("committed", ""), probability=data.get("probability", 0.0),
                   pool=tuple((language, weight) for language, weight in data.get("pool", ())),
                   seconds=data.get("seconds", 0.0), weak=data.get("weak", 0), leading=data.get("leading", ""))
