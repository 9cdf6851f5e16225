from callstt.models.text.results import Word
from callstt.models.text.sentences import split_sentences


def words(*items):
    return [Word(text, start, end, 0.9) for text, start, end in items]


def test_punctuation_closes_sentences_with_their_times():
    result = split_sentences(words(("Hello", 0.0, 0.4), ("there.", 0.4, 0.8), ("How", 1.0, 1.2),
                                   ("are", 1.2, 1.3), ("you?", 1.3, 1.6)))
    assert [(s.text, s.start, s.end) for s in result] == [("Hello there.", 0.0, 0.8), ("How are you?", 1.0, 1.6)]


def test_long_pause_splits_unpunctuated_speech():
    result = split_sentences(words(("yes", 0.0, 0.3), ("okay", 0.3, 0.6), ("then", 2.0, 2.3)))
    assert [s.text for s in result] == ["yes okay", "then"]


def test_no_words_no_sentences():
    assert split_sentences([]) == []
