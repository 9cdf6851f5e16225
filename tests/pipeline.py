"""Test helpers for the real pipeline: the worker subprocess (tests/worker_process.py) and
transcripts grouped per call.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from schemas.records import Transcript
from tests.worker_process import REPO_ROOT, WorkerProcess, free_port  # noqa: F401 (used by the tests)

CALLSTT = str(Path(sys.executable).parent / "callstt")


def by_call(transcripts: list[Transcript]) -> dict[str, list[Transcript]]:
    """Transcripts per call, duplicates dropped by transcript_id, in utterance order."""
    calls: dict[str, dict[str, Transcript]] = defaultdict(dict)
    for transcript in transcripts:
        calls[transcript.call_id].setdefault(transcript.transcript_id, transcript)
    return {call: sorted(items.values(), key=lambda t: (t.stream_id, t.utterance_index))
            for call, items in calls.items()}
