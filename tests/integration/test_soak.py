"""`callstt soak`, the short version CI runs: two calls at a time for a minute, through the
command's own worker on the test broker. Every utterance comes back once after dropping
duplicates by id, and every sample has the worker's memory, open files, state and changelog.
(The hour-long run at the bench's capacity is in issue 16's note.)"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.pipeline import CALLSTT

pytestmark = pytest.mark.integration


def test_a_short_soak_loses_nothing_and_samples_the_worker(kafka_bootstrap, tmp_path):
    result = subprocess.run([CALLSTT, "soak", "--minutes", "1", "--calls", "2", "--sample-every", "20",
                             "--bootstrap", kafka_bootstrap, "--output", str(tmp_path)],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "CALLSTT_TOPIC_PARTITIONS": "3"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "soak.json").read_text())
    print("\n".join((tmp_path / "soak.md").read_text().splitlines()))
    assert report["calls"] >= 4 and report["expected"] >= report["calls"]
    assert report["lost"] == 0 and report["received"] == report["expected"] and report["extra"] == 0, report
    samples = report["samples"]
    assert len(samples) >= 4  # at the start, every 20 s, at the end
    assert all(s["rss_mb"] > 100 and s["open_fds"] > 10 for s in samples), samples
    assert samples[-1]["changelog_records"] > samples[0]["changelog_records"] and samples[-1]["state_mb"] > 0
    assert "| minute | calls begun |" in result.stdout
