"""`callstt bench --windows`: what an encoder window shorter than Whisper's 30 s costs in accuracy
and saves in time (the curve behind CALLSTT_MIN_WINDOW_S, models/asr/batching.py).

Every clip of the speech set (real recordings when given, plus espeak sentences) goes through
`transcribe_many(..., mode="batched", min_window_s=W)` with its language given (the window is
what is measured, not language detection), at 16 kHz PCM and over an 8 kHz G.711 line, for
each W. Per W: WER per language and kind (real / espeak), and the model's milliseconds per
utterance (wall time of the whole batched run over the clips, divided by their number).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from callstt.models.asr.batching import InferenceRequest, transcribe_many
from callstt.streams.bench.corpus import TELEPHONE_RATE, SpeechClip, clip_audio, synthesized_clips, telephone_band
from callstt.streams.bench.evaluation.scoring import error_rate

log = logging.getLogger("callstt.bench")

WINDOWS_S = (5.0, 10.0, 15.0, 20.0, 30.0)
RATES = ("16k", "8k")


def rate_audio(clip: SpeechClip, rate: str):
    return clip_audio(clip) if rate == "16k" else telephone_band(clip_audio(clip, TELEPHONE_RATE))


def window_curve(backend, clips: Sequence[SpeechClip] | None, windows: Sequence[float] = WINDOWS_S,
                 rates: Sequence[str] = RATES, batch_size: int = 8,
                 espeak: tuple[int, int] = (10, 6)) -> dict[str, Any]:
    """The curve: one row per rate and window (see the module docstring); `espeak`: how many
    English and Vietnamese espeak sentences join the recordings."""
    chosen = [c for c in (clips or []) if c.language in ("en", "vi")]
    chosen += synthesized_clips(english=espeak[0], vietnamese=espeak[1])
    groups = sorted({(c.language, "real" if c.path else "espeak") for c in chosen})
    rows = []
    for rate in rates:
        audio = {c.name: rate_audio(c, rate) for c in chosen}
        for window in windows:
            log.info("windows: %s, at least %.0f s", rate, window)
            started = time.perf_counter()
            results = transcribe_many(backend, [InferenceRequest(audio[c.name], c.language) for c in chosen],
                                      "batched", batch_size=batch_size, min_window_s=window)
            seconds = time.perf_counter() - started
            texts = {c.name: r.text for c, r in zip(chosen, results)}
            row: dict[str, Any] = {"rate": rate, "min_window_s": window,
                                   "ms_per_utterance": round(1000 * seconds / len(chosen), 1)}
            for language, kind in groups:
                group = [c for c in chosen if c.language == language and ("real" if c.path else "espeak") == kind]
                _, rate_value = error_rate(language, [c.reference for c in group], [texts[c.name] for c in group])
                row[f"{language}_{kind}"] = None if rate_value is None else round(rate_value, 3)
            rows.append(row)
    counts = {f"{language}_{kind}": sum(1 for c in chosen if c.language == language and
                                        ("real" if c.path else "espeak") == kind) for language, kind in groups}
    return {"clips": counts, "batch_size": batch_size, "rows": rows}


def markdown_lines(section: dict[str, Any]) -> list[str]:
    columns = list(section["clips"])
    lines = ["", "## Encoder window length (CALLSTT_MIN_WINDOW_S, batched mode)", "",
             "Each clip in its own window (its length rounded up to 5 s, at least the minimum), "
             f"{section['batch_size']} windows per model call, language given; WER by language and kind "
             f"(clips: {', '.join(f'{k} {v}' for k, v in section['clips'].items())}).", "",
             "| rate | min window | ms per utterance | " + " | ".join(columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for row in section["rows"]:
        lines.append(f"| {row['rate']} | {row['min_window_s']:g} s | {row['ms_per_utterance']} | "
                     + " | ".join("-" if row.get(c) is None else str(row[c]) for c in columns) + " |")
    return lines
