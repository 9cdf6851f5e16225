"""The bench's figures for what a live run wrote to Kafka (streams/bench/broker_bytes.py): per
second of call and per kind of topic, and the changelog's bytes per byte of audio."""

from callstt.streams.bench.broker_bytes import per_call_second
from callstt.streams.bench.report import kafka_writes_line

KINDS = {"audio": "a.audio", "changelog": "w-table-changelog", "transcripts": "a.transcripts"}


def _written(audio: int, changelog: int, transcripts: int) -> dict:
    return {"a.audio": {"records": 3000, "bytes": audio, "replication_factor": 3, "read_to_end": True},
            "w-table-changelog": {"records": 6000, "bytes": changelog, "replication_factor": 3, "read_to_end": True},
            "a.transcripts": {"records": 20, "bytes": transcripts, "replication_factor": 3, "read_to_end": True}}


def test_bytes_are_shared_out_per_second_of_call_and_the_changelog_is_compared_with_the_audio() -> None:
    figures = per_call_second(_written(3_000_000, 5_220_000, 12_000), 60.0, KINDS)

    assert figures["bytes_per_call_second"] == {"audio": 50_000, "changelog": 87_000, "transcripts": 200}
    assert figures["records_per_call_second"] == {"audio": 50.0, "changelog": 100.0, "transcripts": 0.3}
    assert figures["changelog_per_audio_byte"] == 1.74
    assert figures["replication_factor"]["changelog"] == 3 and figures["complete"]

    line = kafka_writes_line("live K=1", figures)
    assert "audio 50.0 kB, changelog 87.0 kB, transcripts 0.2 kB; 1.74 |" in line


def test_a_run_without_audio_has_no_ratio_and_a_topic_read_short_is_said() -> None:
    written = _written(0, 1000, 0)
    written["a.transcripts"]["read_to_end"] = False

    figures = per_call_second(written, 10.0, KINDS)

    assert figures["changelog_per_audio_byte"] is None and not figures["complete"]
    assert "not read to its end" in kafka_writes_line("pauses K=1", figures)
