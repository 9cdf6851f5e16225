"""Errors of the per-stream audio path that reject one input record.

A rejected record goes to the dead-letter topic; `reason` is the short snake_case
code written as its header, so alerts and dashboards can group rejections without
parsing messages. The message is for people and may change; the reason may not.
"""

from __future__ import annotations

from callstt.schemas.errors import CallsttError


class BadChunk(CallsttError, ValueError):
    """One audio chunk cannot be used; `reason` says why in one stable snake_case word group."""

    # The codes raised by this project (models.audio.decoding and models.audio.sequencing); listed so a
    # dead-letter consumer or a test can check it knows every one.
    REASONS = frozenset({
        "unknown_encoding", "bad_sample_rate", "bad_channels", "partial_sample",
        "oversized_chunk", "empty_payload", "negative_seq", "seq_jump",
    })

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self):  # keep (reason, message) through pickling, e.g. across process pools
        return (type(self), (self.reason, self.message))
