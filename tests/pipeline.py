"""Test helpers for the real pipeline: the worker subprocess (tests/worker_process.py) and
transcripts grouped per call.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from callstt.schemas.records import Transcript
from tests.worker_process import REPO_ROOT, WorkerProcess, free_port  # noqa: F401 (used by the tests)

CALLSTT = str(Path(sys.executable).parent / "callstt")


def by_call(transcripts: list[Transcript]) -> dict[str, list[Transcript]]:
    """Transcripts per call, duplicates dropped by transcript_id, in utterance order."""
    calls: dict[str, dict[str, Transcript]] = defaultdict(dict)
    for transcript in transcripts:
        calls[transcript.call_id].setdefault(transcript.transcript_id, transcript)
    return {call: sorted(items.values(), key=lambda t: (t.stream_id, t.utterance_index))
            for call, items in calls.items()}


# A sentence counts as heard when at least this share of its words come back, in order, within
# one transcript or two consecutive ones of its call (a sentence cut in two by a crash is still
# heard; a sentence whose utterance came back as "Can" is not). espeak's sentences through the
# base model come back at WER <= 0.15, so a share of 0.7 never calls a heard sentence lost.
HEARD_SHARE = 0.7


def words_recalled(reference: str, hypothesis: str) -> float:
    """The share of the reference's words found in the hypothesis, in order (longest common
    subsequence of the normalized words)."""
    from callstt.streams.bench.evaluation.scoring import normalize

    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    if not ref:
        return 1.0
    previous = [0] * (len(hyp) + 1)
    for word in ref:
        current = [0]
        for index, other in enumerate(hyp):
            current.append(previous[index] + 1 if word == other else max(previous[index + 1], current[index]))
        previous = current
    return previous[-1] / len(ref)


def sentences_not_heard(sentences: list[str], transcripts: list[Transcript]) -> list[str]:
    """The sentences of one call (all it spoke, in order) whose words did not come back in its
    transcripts (duplicates by id dropped), whatever their ids say. A sentence spoken k times
    needs k transcripts that hear it (or, for a sentence cut in two, one pair of consecutive ones)."""
    texts = [t.text for t in sorted({t.transcript_id: t for t in transcripts}.values(),
                                    key=lambda t: (t.stream_id, t.utterance_index))]
    pairs = [f"{a} {b}" for a, b in zip(texts, texts[1:])]
    lost = []
    for sentence in dict.fromkeys(sentences):
        spoken = sentences.count(sentence)
        heard = sum(words_recalled(sentence, text) >= HEARD_SHARE for text in texts)
        if heard == 0 and any(words_recalled(sentence, pair) >= HEARD_SHARE for pair in pairs):
            heard = 1
        lost += [sentence] * max(spoken - heard, 0)
    return lost
