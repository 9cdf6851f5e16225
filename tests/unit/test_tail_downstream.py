"""`callstt tail --translations` and `--speech` without Kafka: a translation's line, the speech
chunks summed per translated utterance, and the command's choice of topic, decoder and output."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
from typer.testing import CliRunner

from callstt.schemas.records import SPEECH_SEQ_PER_UTTERANCE as SEQ_PER_UTTERANCE
from callstt.schemas.records import AudioChunk, Encoding, Translation, TranslationStatus
from callstt.streams.client.tailing import SpokenUtterance, format_spoken, format_translation, spoken_utterances

PRODUCED = datetime(2024, 5, 1, 9, 30, 5).astimezone()


def translation(status: TranslationStatus = TranslationStatus.OK, text: str = "Obrigado por ligar.",
                source: str = "en", target: str = "pt", call: str = "call-1", index: int = 0) -> Translation:
    return Translation(translation_id=f"{call}-{index}-{target}", transcript_id=f"{call}-{index}", call_id=call,
                       stream_id="caller", utterance_index=index, source_language=source, target_language=target,
                       status=status, text=text, backend="bergamot", transcript_produced_ts_ms=0,
                       produced_ts_ms=int(PRODUCED.timestamp() * 1000))


def chunk(seq: int, call: str = "call-1", leg: str = "caller>pt", ms: int = 100, value: int = 0) -> AudioChunk:
    samples = np.full(16 * ms, value, dtype="<i2")  # 16 kHz PCM
    return AudioChunk(call_id=call, stream_id=leg, seq=seq, capture_ts_ms=seq * 100, sample_rate=16000,
                      encoding=Encoding.PCM_S16LE, payload=samples.tobytes(), language="pt")


def test_a_translation_is_one_line_with_its_language_pair():
    assert format_translation(translation(text="Obrigado  por\nligar.")) == \
        "2024-05-01 09:30:05  call-1  caller  #0  en->pt  Obrigado por ligar."


def test_a_translation_that_is_not_ok_says_what_it_is():
    unsupported = translation(TranslationStatus.UNSUPPORTED_PAIR, text="", source="vi", target="en")
    assert format_translation(unsupported) == "2024-05-01 09:30:05  call-1  caller  #0  vi->en  [unsupported_pair]"
    passthrough = translation(TranslationStatus.PASSTHROUGH, text="Olá.", source="pt")
    assert format_translation(passthrough).endswith("  pt->pt  [passthrough] Olá.")


def test_speech_is_summed_per_translated_utterance_and_a_repeat_counts_once():
    second = SEQ_PER_UTTERANCE  # utterance 1's first chunk
    chunks = [chunk(0), chunk(1), chunk(0, call="call-2"), chunk(1),  # a repeat (a speaker's crash)
              chunk(2, ms=50), chunk(second), chunk(1),  # a late repeat of utterance 0: not news
              chunk(second + 1), chunk(1, call="call-2")]
    found = list(spoken_utterances(chunks))
    assert [(u.call_id, u.utterance_index, u.chunks, round(u.seconds, 3)) for u in found] == [
        ("call-1", 0, 3, 0.25),  # yielded as utterance 1 starts
        ("call-2", 0, 2, 0.2),  # the rest when the chunks end, in the order they started
        ("call-1", 1, 2, 0.2)]
    assert format_spoken(found[0]) == "call-1  caller>pt  #0  3 chunks  0.25 s"
    assert found[0].to_dict() == {"call_id": "call-1", "stream_id": "caller>pt", "utterance_index": 0,
                                  "language": "pt", "chunks": 3, "seconds": 0.25}


class FakeTail:
    """Stands in for TranscriptTail: records what the command asked for, yields the given records."""

    made: list[FakeTail] = []
    records: list = []

    def __init__(self, bootstrap, topics, start, codec, timeout, extra_config, decode):
        self.topics, self.start, self.decode = topics, start, decode
        FakeTail.made.append(self)

    def follow(self, idle_exit_s=None, call_id=None):
        return iter([r for r in FakeTail.records if call_id is None or r.call_id == call_id])

    def close(self):
        pass


def run_tail(monkeypatch, records, *args):
    from callstt.streams import cli

    monkeypatch.setattr(cli, "TranscriptTail", FakeTail)
    FakeTail.made, FakeTail.records = [], records
    monkeypatch.setenv("CALLSTT_TRANSLATION_TOPIC", "x.translations")
    monkeypatch.setenv("CALLSTT_SPEECH_TOPIC", "x.speech")
    return CliRunner().invoke(cli.app, ["tail", *args])


def test_tail_translations_reads_the_translation_topic_and_writes_a_line_each(monkeypatch):
    records = [translation(), translation(TranslationStatus.UNSUPPORTED_PAIR, "", "vi", "en", call="call-2")]
    result = run_tail(monkeypatch, records, "--translations", "--from-beginning")
    assert result.exit_code == 0, result.output
    (tail,) = FakeTail.made
    assert tail.topics == ["x.translations"] and tail.start == "beginning"
    assert tail.decode.__name__ == "decode_translation"
    assert result.output.splitlines() == [format_translation(t) for t in records]

    result = run_tail(monkeypatch, records, "--translations", "--json", "--call", "call-2", "--topic", "y.tr")
    assert FakeTail.made[0].topics == ["y.tr"]
    assert [json.loads(line)["status"] for line in result.output.splitlines()] == ["UNSUPPORTED_PAIR"]


def test_tail_speech_reads_the_speech_topic_and_writes_a_line_per_utterance(monkeypatch):
    result = run_tail(monkeypatch, [chunk(0), chunk(1), chunk(SEQ_PER_UTTERANCE)], "--speech")
    assert result.exit_code == 0, result.output
    assert FakeTail.made[0].topics == ["x.speech"] and FakeTail.made[0].decode.__name__ == "decode_chunk"
    assert result.output.splitlines() == ["call-1  caller>pt  #0  2 chunks  0.20 s",
                                          "call-1  caller>pt  #1  1 chunk  0.10 s"]
    result = run_tail(monkeypatch, [chunk(0)], "--speech", "--json")
    assert json.loads(result.output) == SpokenUtterance("call-1", "caller>pt", 0, "pt", {0}, 0.1).to_dict()


def test_one_kind_of_record_at_a_time(monkeypatch):
    for flags in (["--translations", "--speech"], ["--partials", "--translations"], ["--partials", "--speech"]):
        result = run_tail(monkeypatch, [], *flags)
        assert result.exit_code == 2 and FakeTail.made == [], flags
