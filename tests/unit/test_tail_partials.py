"""`callstt tail --partials` without Kafka: which interims the view keeps (InterimBoard), how an
interim line is drawn, the piped lines, the terminal view, and the readers over two topics."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
from rich.console import Console
from typer.testing import CliRunner

from callstt.schemas.records import Transcript
from callstt.streams.client import reader as reader_module
from callstt.streams.client import tailing
from callstt.streams.client.reader import TranscriptReader
from callstt.streams.client.tailing import (InterimBoard, OpenUtterance, format_transcript, interim_text, plain_lines,
                                            show_live, split_stable)

PRODUCED = datetime(2024, 5, 1, 9, 30, 5).astimezone()


def record(text: str, revision: int = 0, stable: int = 0, index: int = 0, call: str = "call-1",
           stream: str = "caller") -> Transcript:
    """An interim (revision >= 1, its first `stable` words stable) or, with revision 0, a final."""
    return Transcript(transcript_id=f"{call}-{stream}-{index}", call_id=call, stream_id=stream,
                      utterance_index=index, is_final=revision == 0, text=text, language="en",
                      language_probability=1.0, start_ms=0, end_ms=1, model_name="base", backend="faster-whisper",
                      avg_logprob=0.0, no_speech_prob=0.0, last_audio_capture_ts_ms=0, last_audio_received_ts_ms=0,
                      produced_ts_ms=int(PRODUCED.timestamp() * 1000), revision=revision,
                      stable_word_count=stable, stable_text=" ".join(text.split()[:stable]))


def shown(board: InterimBoard) -> list[tuple[str, int, int, str, str]]:
    return [(u.call_id, u.utterance_index, u.revision, u.stable, u.unstable) for u in board.open]


@pytest.mark.parametrize("text, stable_text, expected", [
    (" I would like to", " I would", ("I would", "like to")),
    ("I would like to", "", ("", "I would like to")),
    ("I would  like\nto", "I would like to", ("I would like to", "")),
    ("", "", ("", "")),
])
def test_split_stable_counts_the_stable_words(text, stable_text, expected):
    assert split_stable(text, stable_text) == expected


def test_the_latest_revision_of_an_utterance_is_shown_and_older_ones_are_ignored():
    board = InterimBoard()
    assert board.offer(record("I would", revision=1))
    assert board.offer(record("I would like a", revision=3, stable=2))
    assert not board.offer(record("I would like", revision=2, stable=1))  # arrived late: older than shown
    assert not board.offer(record("I would like a", revision=3, stable=2))  # the same one again
    assert shown(board) == [("call-1", 0, 3, "I would", "like a")]


def test_a_final_replaces_its_interims_and_later_interims_of_it_are_ignored():
    board = InterimBoard()
    board.offer(record("I would", revision=1))
    board.offer(record("Thank", revision=1, call="call-2"))
    assert board.offer(record("I would like a table."))  # the final: always shown (printed)
    assert shown(board) == [("call-2", 0, 1, "", "Thank")]
    assert not board.offer(record("I would like a tab", revision=4, stable=3))  # after its final
    assert board.offer(record("Next", revision=1, index=1))  # the stream's next utterance is new
    assert [u.utterance_index for u in board.open if u.call_id == "call-1"] == [1]


def test_a_final_closes_the_earlier_open_utterances_of_its_stream_only():
    board = InterimBoard()
    board.offer(record("noise words", revision=1, index=0))  # its final never comes (the guard dropped it)
    board.offer(record("agent speaking", revision=1, index=0, stream="agent"))
    board.offer(record("Hello there.", index=1))
    assert shown(board) == [("call-1", 0, 1, "", "agent speaking")]
    assert not board.offer(record("noise words again", revision=2, index=0))


def test_the_view_keeps_the_most_recently_updated_utterances():
    board = InterimBoard(max_open=2)
    for call in ("a", "b", "c"):
        board.offer(record("words", revision=1, call=call))
    assert [u.call_id for u in board.open] == ["b", "c"]
    board.offer(record("more words", revision=2, call="b"))  # updated: now the most recent
    board.offer(record("words", revision=1, call="d"))
    assert [u.call_id for u in board.open] == ["b", "d"]


def test_the_remembered_finals_are_bounded():
    board = InterimBoard(max_streams=2)
    for call in ("a", "b", "c"):
        board.offer(record("Done.", call=call))
    assert board.offer(record("late", revision=1, call="a"))  # forgotten: shown again, memory stays small
    assert not board.offer(record("late", revision=1, call="c"))


def test_an_interim_line_has_its_stable_words_plain_and_the_rest_dim_italic():
    line = interim_text(OpenUtterance("call-1", "caller", 2, 5, "I would", "like a [tab]"))
    assert line.plain == "~ call-1  caller  #2  I would like a [tab]"
    styled = [(line.plain[span.start:span.end], str(span.style)) for span in line.spans]
    assert styled == [("like a [tab]", "dim italic")]


def test_format_transcript_marks_interims():
    interim = record("I would like", revision=2, stable=1)
    assert format_transcript(interim) == "2024-05-01 09:30:05  call-1  caller  en  ~ I would like"
    assert format_transcript(record("I would like.")) == "2024-05-01 09:30:05  call-1  caller  en  I would like."


def test_piped_lines_skip_stale_interims():
    records = [record("I would", revision=1), record("I would like a", revision=3, stable=2),
               record("I would like", revision=2, stable=1), record("I would like a table."),
               record("I would like a tab", revision=4, stable=3)]
    lines = list(plain_lines(records))
    assert [line.split("  ", 4)[-1] for line in lines] == ["~ I would", "~ I would like a", "I would like a table."]


def test_the_terminal_view_draws_interims_and_prints_finals_above_them():
    output = io.StringIO()
    console = Console(file=output, force_terminal=True, color_system="standard", width=100)
    board = InterimBoard()
    show_live([record("I would", revision=1), record("Thank you", revision=1, stable=1, call="call-2"),
               record("I would like a table.")], console, board)
    text = output.getvalue()
    assert "call-1  caller  #0  " in text and "I would" in text
    assert "\x1b[2;3m" in text  # dim italic: the unstable words
    assert "2024-05-01 09:30:05  call-1  caller  en  I would like a table." in text
    assert shown(board) == [("call-2", 0, 1, "Thank", "you")]  # what stays on screen at the end


class RecordingConsumer:
    def __init__(self, config):
        self.config, self.subscribed = config, None

    def subscribe(self, topics, **kwargs):
        self.subscribed = topics

    def close(self):
        pass


def test_the_readers_take_one_topic_or_several(monkeypatch):
    monkeypatch.setattr(reader_module, "Consumer", RecordingConsumer)
    assert TranscriptReader("127.0.0.1:1", "t.transcripts").consumer.subscribed == ["t.transcripts"]
    both = ("t.transcripts", "t.transcripts.partial")
    assert TranscriptReader("127.0.0.1:1", both).consumer.subscribed == list(both)

    checked = []
    monkeypatch.setattr(tailing, "Consumer", RecordingConsumer)
    monkeypatch.setattr(tailing, "check_topic", lambda client, bootstrap, topic, *args: checked.append(topic))
    tail = tailing.TranscriptTail("127.0.0.1:1", list(both))
    assert checked == list(both) and tail.consumer.subscribed == list(both)  # each must exist
    assert tail.topic == "t.transcripts, t.transcripts.partial"


def test_partial_topic_needs_partials():
    from callstt.streams.cli import app

    result = CliRunner().invoke(app, ["tail", "--partial-topic", "x.partial"])
    assert result.exit_code == 2
