"""Redaction precision and recall on a synthetic call: sentences a caller says with a card
number, a phone number or an e-mail address in them (positives), and sentences with numbers
that must stay (negatives: order and ticket numbers, times, prices, dates), spoken with
espeak-ng, transcribed by the model as the worker does (packed, English) and redacted with
every kind on (streams/core/redaction.py).

    report = measure_redaction(router)
    report["recall"], report["precision"], report["rows"]

Recall: the share of positives whose value is gone (its kind's placeholder present and no
digit left, or no address left for an e-mail). Precision: the share of placeholders that sit
in a positive of their kind. A value the model misheard (e.g. a digit dropped, so no valid
number is left to find) counts as a miss: that is what a caller's data would meet.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from callstt.models.asr.batching import InferenceRequest, transcribe_many
from callstt.models.voices.synth import synthesize
from callstt.streams.core.redaction import PLACEHOLDERS, RedactionConfig, redact


@dataclass(frozen=True)
class Item:
    text: str  # what the caller says (espeak reads digits one by one when they are spaced)
    kind: str | None  # the kind to redact, None for a negative


REDACTION_SET = [
    Item("My card number is 4 5 3 2, 0 1 5 1, 1 2 8 3, 0 3 6 6.", "card"),
    Item("The card is 5 4 2 5, 2 3 3 4, 3 0 1 0, 9 9 0 3.", "card"),
    Item("Please charge my Visa, 4 7 1 6, 1 0 8 9, 9 9 7 1, 6 5 3 1.", "card"),
    Item("My phone number is 4 1 5, 5 5 5, 2 6 7 1.", "phone"),
    Item("Call me back at 6 1 7, 4 9 3, 2 2 8 0.", "phone"),
    Item("My mobile is plus 4 4, 2 0, 7 9 4 6, 0 9 5 8.", "phone"),
    Item("My address is mary.jones@gmail.com.", "email"),
    Item("Send the receipt to tom.baker@yahoo.com.", "email"),
    Item("Your order 7 7 2 1 9 arrives at 10:45 tomorrow.", None),
    Item("The total is 45 dollars and 99 cents.", None),
    Item("I called on March 3rd 2024 at half past three.", None),
    Item("Your ticket number is 5 5 3 1 2 8.", None),
    Item("We open at 9 and close at 5, Monday to Friday.", None),
    Item("It costs 1299 dollars for two years.", None),
]


def _value_gone(item: Item, text: str) -> bool:
    if item.kind == "email":
        return PLACEHOLDERS["email"] in text and "@" not in text
    return PLACEHOLDERS[item.kind] in text and not re.search(r"\d", text)


def measure_redaction(router, mode: str = "packed") -> dict[str, Any]:
    """Transcribe the set (one model step, `mode`), redact every kind, and score it."""
    audios = [synthesize(item.text, "en") for item in REDACTION_SET]
    started = time.perf_counter()
    results = transcribe_many(router, [InferenceRequest(audio, "en") for audio in audios], mode)
    seconds = time.perf_counter() - started
    config = RedactionConfig.parse("card,phone,email")
    rows, found, placeholders, placed_right, kept = [], 0, 0, 0, 0
    for item, result in zip(REDACTION_SET, results):
        redaction = redact(result.words, config)
        text = redaction.text if redaction.counts else result.text
        spans = sum(redaction.counts.values())
        placeholders += spans
        if item.kind is None:
            kept += spans == 0
        else:
            found += _value_gone(item, text)
            placed_right += redaction.counts.get(item.kind, 0)
        rows.append({"said": item.text, "kind": item.kind, "heard": result.text, "redacted": text,
                     "counts": dict(redaction.counts)})
    positives = sum(item.kind is not None for item in REDACTION_SET)
    negatives = len(REDACTION_SET) - positives
    return {"mode": mode, "positives": positives, "negatives": negatives,
            "recall": round(found / positives, 3), "precision": round(placed_right / placeholders, 3) if placeholders else None,
            "negatives_kept": f"{kept}/{negatives}", "model_seconds": round(seconds, 2), "rows": rows}
