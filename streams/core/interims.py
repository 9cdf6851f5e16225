"""Interim transcripts: the words of an utterance while its speaker is still talking.

The endpointer (models/audio/endpointing.py) cuts the open utterance every CALLSTT_PARTIAL_INTERVAL_MS
of voiced time (an *interim* cut, revision 1, 2, ...). When the model has room, the worker
transcribes it, after the batch's finals and in one model call for every call's interims, with
a shorter encoder window than the final's (the final corrects what it gets wrong), and
publishes the result on the partial-transcript topic. The final transcript, decoded afresh
from the whole utterance exactly as with interims off, replaces them.

Which words are stable: LocalAgreement-2 (as the open Whisper streaming servers do). A word
becomes stable when two consecutive hypotheses of the utterance agree on it and on every word
before it; a stable prefix is kept word for word by every later interim, whatever the model
says next: a later hypothesis that contradicts it keeps the stable words and takes only its
words after them (by time). Why agreement, not a fixed delay: the last words of a hypothesis
are the ones cut off mid-word at the end of the audio, and those are exactly the ones two
hypotheses a second apart disagree on; agreement waits one interim (about a second of speech)
for a word and never promises one the model is still unsure of.

With redaction on for the call, an interim ends before the first word that redaction could
still remove from the final (streams/core/redaction.py `shown_in_interim`), so its stable prefix
never holds a half-said card number.

Best effort, never at a final's expense (`choose`): interims run in their own lane (the
worker's interim thread, streams/worker/agent.py), beside the finals' model calls, so a final
that becomes ready while an interim call runs starts at once instead of waiting for it (with
CALLSTT_MODEL_LANES >= 2 the model runs both at once). They start only when no final is
waiting, when the audio is recent (the worker is not behind), only the newest interim of each
stream (older ones are coalesced), and at most one model call's worth at a time. One that
waited for a final, for room or for the interim lane is deferred to the next batch, at most
one per stream, until a newer cut of its stream replaces it or its audio is older than the
latency budget; the rest are skipped. An interim whose utterance's final was decided while
it ran is dropped ("stale"): nothing of an utterance is published as interim after its final.

Nothing here is kept in the table: the hypotheses live in memory, one per open utterance (at
most MAX_OPEN), so a worker that restarts starts each open utterance's agreement afresh (its
revision numbers still come from the endpointer, so they keep increasing).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from callstt.schemas.records import TranscriptWord
from callstt.streams.core.assembly import Utterance

# Open utterances with a hypothesis kept, at most (a stream that moved to another worker never
# sends its final here: the oldest go first).
MAX_OPEN = 4096
_NOT_WORD = re.compile(r"[^\w']+")


def normalized(word: str) -> str:
    """A word as agreement compares it: case and punctuation do not count ("Hello," == "hello")."""
    return _NOT_WORD.sub("", word).lower()


def text_of(words: Iterable[TranscriptWord]) -> str:
    return "".join(word.text if word.text.startswith(" ") else f" {word.text}" for word in words).strip()


def agreed_prefix(first: Sequence[TranscriptWord], second: Sequence[TranscriptWord]) -> int:
    """How many leading words two hypotheses share."""
    count = 0
    for a, b in zip(first, second):
        if normalized(a.text) != normalized(b.text):
            break
        count += 1
    return count


def after_stable(stable: Sequence[TranscriptWord], new: Sequence[TranscriptWord]) -> list[TranscriptWord]:
    """The words of a new hypothesis that follow the stable ones: by position when it starts with
    them, else by time (the words whose middle comes after the last stable word's end)."""
    if agreed_prefix(stable, new) == len(stable):
        return list(new[len(stable):])
    stable_end = stable[-1].end_ms
    return [word for word in new if (word.start_ms + word.end_ms) / 2 >= stable_end]


@dataclass(frozen=True)
class Hypothesis:
    """The latest interim of one open utterance."""

    index: int  # the utterance's index in its stream
    start_ms: int
    revision: int
    words: tuple[TranscriptWord, ...]
    stable: int  # leading words of `words` every later interim keeps


def revise(previous: Hypothesis, revision: int, new: Sequence[TranscriptWord]) -> Hypothesis:
    """The next hypothesis: the stable words, then the new ones after them; its stable prefix is
    the old one, grown by what the previous and this hypothesis agree on."""
    stable = previous.words[:previous.stable]
    words = (*stable, *after_stable(stable, new))
    return Hypothesis(previous.index, previous.start_ms, revision, words,
                      max(previous.stable, agreed_prefix(previous.words, words)))


class Interims:
    """The hypotheses of open utterances, one per stream, and the index of each stream's last
    final (touched by the finals' model thread and the interim lane: one lock)."""

    def __init__(self, max_open: int = MAX_OPEN) -> None:
        self.max_open = max_open
        self._open: OrderedDict[tuple[str, str], Hypothesis] = OrderedDict()
        # Per stream, its last final decided: (index, capture time of its last audio).
        self._finals: OrderedDict[tuple[str, str], tuple[int, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._open)

    def revise(self, utterance: Utterance, words: Sequence[TranscriptWord]) -> Hypothesis | None:
        """The utterance's next hypothesis from the model's `words` (None: an interim older than, or
        the same as, one already revised: a redelivered or late cut has nothing new)."""
        key = (utterance.call_id, utterance.stream_id)
        with self._lock:
            final_index, final_capture_ms = self._finals.get(key, (-1, 0))
            if utterance.index <= final_index and utterance.last_capture_ts_ms <= final_capture_ms:
                return None  # its final was decided while this interim ran (a stream that starts
                # again under the same ids counts from 0 again, with later audio)
            previous = self._open.get(key)
            if previous is None or (previous.index, previous.start_ms) != (utterance.index, utterance.start_ms):
                if previous is not None and previous.index > utterance.index:
                    return None
                previous = Hypothesis(utterance.index, utterance.start_ms, 0, (), 0)
            if utterance.revision <= previous.revision:
                return None
            hypothesis = revise(previous, utterance.revision, words)
            self._open[key] = hypothesis
            self._open.move_to_end(key)
            while len(self._open) > self.max_open:
                self._open.popitem(last=False)
            return hypothesis

    def close(self, final: Utterance) -> None:
        """The utterance's final is decided: its hypothesis goes (a later utterance's stays), and
        an interim of it still running is dropped when it ends (`revise`)."""
        key = (final.call_id, final.stream_id)
        with self._lock:
            previous = self._open.get(key)
            if previous is not None and previous.index <= final.index:
                del self._open[key]
            self._finals[key] = (final.index, final.last_capture_ts_ms)
            self._finals.move_to_end(key)
            while len(self._finals) > self.max_open:
                self._finals.popitem(last=False)


@dataclass(frozen=True)
class Choice:
    run: list  # (state, utterance) pairs to transcribe now, oldest audio first
    deferred: list  # still worth running, after the finals waiting or when there is room
    skipped: int  # coalesced into a newer interim of their stream, or too old


def choose(interims: Sequence[tuple], finals_waiting: bool, newer: set[tuple[str, str]], now_ms: int,
           budget_ms: int, room: int, lane_busy: bool = False) -> Choice:
    """Which interims run now. Only those whose stream has no newer interim waiting (`newer`:
    coalesced into it) and whose audio is recent (captured within `budget_ms` of `now_ms`: a
    worker that is behind has finals to catch up on) are worth it; of those, none runs while
    finals wait for the model (`finals_waiting`) or an interim call still runs (`lane_busy`),
    and at most `room` (one model call), the oldest audio first; the others are deferred."""
    fresh = [(state, u) for state, u in interims
             if (u.call_id, u.stream_id) not in newer and now_ms <= u.last_capture_ts_ms + budget_ms]
    fresh.sort(key=lambda item: item[1].last_capture_ts_ms)
    run = [] if finals_waiting or lane_busy else fresh[:room]
    return Choice(run, fresh[len(run):], len(interims) - len(fresh))
