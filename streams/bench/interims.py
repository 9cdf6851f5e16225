"""The live section's interim figures (`live[K].interims` in bench.json): how soon words show
up in interims, how soon the first interim of an utterance follows its speech start, how many
interim words the final later changed, and what the interims cost the worker.

Pure functions over `Arrival`s (a transcript and the wall time it was read, ms), finals from the
transcript topic and interims from the partial topic, plus two scrapes of the worker's /metrics;
no Kafka here, so the unit tests build the records by hand."""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from typing import Any

from callstt.streams.bench.collecting import Arrival
from callstt.streams.bench.stats import _r, histogram_quantile, metric_sum, summary

INTERIM_OUTCOMES = ("published", "skipped", "dropped", "failed")
_PUNCTUATION = re.compile(r"[^\w\s]")


def capture_ms(record, stream_ms: int) -> int | None:
    """The capture time (platform clock) of stream time `stream_ms`, from the record that holds it:
    its audio ends at `end_ms` in stream time and was captured at `last_audio_capture_ts_ms`.
    None when the record carries no capture time (a producer that sets none)."""
    if record.last_audio_capture_ts_ms <= 0:
        return None
    return record.last_audio_capture_ts_ms - (record.end_ms - stream_ms)


def by_utterance(arrivals: list[Arrival]) -> dict[str, list[Arrival]]:
    """Arrivals grouped by transcript_id (an interim shares its final's), each group by arrival."""
    groups: dict[str, list[Arrival]] = defaultdict(list)
    for a in sorted(arrivals, key=lambda a: a.arrived_ms):
        groups[a.transcript.transcript_id].append(a)
    return dict(groups)


def word_delays(interims: list[Arrival]) -> list[float]:
    """Seconds from the capture of each word's end to the first interim (by arrival) of its
    utterance holding that word position: what a live caption shows a word after it was said."""
    delays = []
    for group in by_utterance(interims).values():
        shown = 0  # word positions an earlier interim of the utterance already showed
        for a in group:
            words = a.transcript.words
            for word in words[shown:]:
                captured = capture_ms(a.transcript, word.end_ms)
                if captured is not None:
                    delays.append((a.arrived_ms - captured) / 1000)
            shown = max(shown, len(words))
    return delays


def first_interim_delays(interims: list[Arrival], finals: dict[str, Any]) -> list[float]:
    """Per utterance with interims: seconds from the capture of its speech start to its first
    interim. The speech start is the final's first word when there is one (the final sees the
    whole utterance), else the first interim's; a record without words gives its own start."""
    delays = []
    for transcript_id, group in by_utterance(interims).items():
        first = group[0]
        final = finals.get(transcript_id)
        holder = final if final is not None and final.words else first.transcript
        start = holder.words[0].start_ms if holder.words else holder.start_ms
        captured = capture_ms(holder, start)
        if captured is not None:
            delays.append((first.arrived_ms - captured) / 1000)
    return delays


def normalised(texts) -> list[str]:
    """Lower case, punctuation stripped; words that were only punctuation are left out (the final
    may attach a comma differently, which is no change of word)."""
    words = (_PUNCTUATION.sub("", text.lower()).strip() for text in texts)
    return [word for word in words if word]


def _unmatched(words: list[str], final: list[str]) -> int:
    matcher = difflib.SequenceMatcher(None, words, final, autojunk=False)
    return len(words) - sum(block.size for block in matcher.get_matching_blocks())


def changed_words(interims: list[Arrival], finals: dict[str, Any]) -> dict[str, Any]:
    """Share of interim words (of utterances whose final arrived) that the final does not keep,
    over every interim (each revision counts its words again: what a reader saw change), and
    the same share over the stable words only (those the worker promised not to change)."""
    changed = total = stable_changed = stable_total = 0
    for transcript_id, group in by_utterance(interims).items():
        final = finals.get(transcript_id)
        if final is None:
            continue
        final_words = normalised(w.text for w in final.words) if final.words else normalised(final.text.split())
        for a in group:
            t = a.transcript
            words = normalised(w.text for w in t.words) if t.words else normalised(t.text.split())
            stable = normalised(w.text for w in t.words[:t.stable_word_count])
            changed, total = changed + _unmatched(words, final_words), total + len(words)
            stable_changed, stable_total = stable_changed + _unmatched(stable, final_words), stable_total + len(stable)
    return {"interim_words": total, "changed_share": _r(changed / total) if total else None,
            "stable_words": stable_total,
            "stable_changed_share": _r(stable_changed / stable_total) if stable_total else None}


def interim_metrics(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, Any]:
    """The worker's side over the run: interim cuts by outcome, the share of the run its model
    spent on interims (callstt_stage_seconds_total{stage="model_interims"}), and its own capture ->
    acknowledged latency of the interims it published (callstt_interim_latency_seconds)."""
    def delta(name: str) -> float:
        return metric_sum(after, name) - metric_sum(before, name)

    model_s = delta('callstt_stage_seconds_total{stage="model_interims"}')
    return {**{outcome: int(delta(f'callstt_interims_total{{outcome="{outcome}"}}')) for outcome in INTERIM_OUTCOMES},
            "model_seconds": _r(model_s), "model_busy_fraction": _r(model_s / seconds, 2) if seconds else None,
            "worker_capture_to_ack_s": {
                q: _r(histogram_quantile(before, after, "callstt_interim_latency_seconds", float(q[1:]) / 100))
                for q in ("p50", "p95")}}


def interim_figures(interims: list[Arrival], finals: list[Arrival], before: dict[str, float],
                    after: dict[str, float], seconds: float) -> dict[str, Any]:
    """The `interims` block of one live run (K calls)."""
    final_by_id = {a.transcript.transcript_id: a.transcript for a in finals}
    with_interims = {a.transcript.transcript_id for a in interims}
    return {
        "received": len(interims),
        **interim_metrics(before, after, seconds),
        "word_delay_s": summary(word_delays(interims)),
        "first_interim_after_speech_start_s": summary(first_interim_delays(interims, final_by_id)),
        **changed_words(interims, final_by_id),
        "final_utterances": len(final_by_id),
        "utterances_with_interims_share": (_r(len(with_interims & final_by_id.keys()) / len(final_by_id))
                                           if final_by_id else None),
    }
