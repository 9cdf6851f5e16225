"""How the fault suite counts lost speech (tests/pipeline.py sentences_not_heard): by the words
that came back, not by transcript ids."""

from __future__ import annotations

from callstt.schemas.records import Transcript
from tests.pipeline import sentences_not_heard, words_recalled

SENTENCES = ["Please call me back tomorrow morning.", "I would like to book a table for two people.",
             "Thank you for calling customer support.", "Can you hear me clearly now?"]


def transcript(index: int, text: str, transcript_id: str | None = None) -> Transcript:
    return Transcript(transcript_id=transcript_id or f"id-{index}", call_id="c", stream_id="caller",
                      utterance_index=index, text=text, language="en", language_probability=1.0, start_ms=0,
                      end_ms=1, model_name="base", backend="faster-whisper", avg_logprob=-0.2, no_speech_prob=0.0,
                      last_audio_capture_ts_ms=0, last_audio_received_ts_ms=0, produced_ts_ms=0)


def test_every_sentence_heard_though_the_model_misses_a_word():
    texts = ["Please call me back tomorrow morning.", "I'd like to book a table for two people",
             "Thank you for calling customer support", "Can you hear me clearly?"]
    assert sentences_not_heard(SENTENCES, [transcript(i, text) for i, text in enumerate(texts)]) == []


def test_a_sentence_whose_utterance_came_back_cut_is_lost_though_every_id_is_there():
    """The scaling run of issue 22: #2 came back as "Can", every id present."""
    texts = ["Please call me back tomorrow morning.", "I would like to book a table for two people.", "Can",
             "Can you hear me clearly now?"]
    assert sentences_not_heard(SENTENCES, [transcript(i, text) for i, text in enumerate(texts)]) == [SENTENCES[2]]


def test_sentences_merged_into_one_utterance_or_split_across_two_are_heard():
    merged = [transcript(0, "Please call me back tomorrow morning. I would like to book a table for two people."),
              transcript(1, "Thank you for calling"), transcript(2, "customer support. Can you hear me clearly now?")]
    assert sentences_not_heard(SENTENCES, merged) == []


def test_a_missing_utterance_and_a_duplicate_id():
    transcripts = [transcript(0, SENTENCES[0]), transcript(0, SENTENCES[0]), transcript(1, SENTENCES[1])]
    assert sentences_not_heard(SENTENCES, transcripts) == SENTENCES[2:]
    assert words_recalled("a b c d", "a x c") == 0.5


def test_a_sentence_spoken_twice_needs_two_transcripts():
    twice = SENTENCES[:2] * 2
    heard_once_each = [transcript(i, text) for i, text in enumerate(SENTENCES[:2])]
    assert sentences_not_heard(twice, heard_once_each) == SENTENCES[:2]
    assert sentences_not_heard(twice, [transcript(i, text) for i, text in enumerate(twice)]) == []
