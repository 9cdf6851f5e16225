"""Transcript redaction (streams.core.redaction): cards, phones, e-mails, configured IDs; pure, no Kafka."""

from __future__ import annotations

import re

import phonenumbers
import pytest

from callstt.models.text.results import Word
from callstt.schemas.errors import CallsttError
from callstt.streams.core.redaction import (Redaction, RedactionConfig, RedactionConfigError, luhn_valid, normalise,
                                            redact, shown_in_interim)

SLOT = 0.3
ALL = RedactionConfig.parse("all")
SSN = r"\b\d{3}-\d{2}-\d{4}\b"


def tokens(texts: list[str]) -> list[Word]:
    """Words with exactly these texts, a 0.3 s slot each."""
    return [Word(text=text, start=round(i * SLOT, 3), end=round((i + 1) * SLOT, 3), probability=0.9)
            for i, text in enumerate(texts)]


def words(sentence: str) -> list[Word]:
    """Words as the backends give them: stripped, punctuation attached, one per space-separated token."""
    return tokens(sentence.split())


def normalised(sentence: str) -> str:
    return str(normalise(words(sentence))[0])


def check_span(result: Redaction, source: list[Word], placeholder: str, first: int, last: int) -> None:
    """The placeholder sits where the span began, covers its exact timings, and nothing else moved."""
    at = result.words[first]
    assert at.text.strip().rstrip(".,") == placeholder
    assert (at.start, at.end) == (source[first].start, source[last].end)
    assert result.words[:first] == source[:first] and all(a is b for a, b in zip(result.words, source[:first]))
    tail = result.words[first + 1:]
    assert len(tail) == len(source) - last - 1 and all(a is b for a, b in zip(tail, source[last + 1:]))


def no_digits(text: str) -> bool:
    return not any(c.isdigit() for c in text)


# --- cards -------------------------------------------------------------------------------------------

def test_luhn():
    assert luhn_valid("4111111111111111") and luhn_valid("4532015112830366") and luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112") and not luhn_valid("1234567812345678")


def test_a_visa_in_digits_becomes_one_card_placeholder():
    source = words("My card is 4111 1111 1111 1111 thanks.")
    result = redact(source, ALL)
    assert result.text == "My card is [CARD] thanks."
    check_span(result, source, "[CARD]", 3, 6)
    assert (result.words[3].start, result.words[3].end) == (0.9, 2.1)
    assert result.counts == {"card": 1}


def test_a_visa_in_words_keeps_the_sentence_end_and_the_weakest_probability():
    source = words("it is " + " ".join(["four"] + ["one"] * 15) + ".")
    source[5] = Word(source[5].text, source[5].start, source[5].end, 0.4)
    result = redact(source, ALL)
    assert result.text == "it is [CARD]."
    assert result.words[2].text == "[CARD]."
    check_span(result, source, "[CARD]", 2, 17)
    assert result.words[2].probability == 0.4
    assert result.counts == {"card": 1}


def test_double_and_triple_repeat_the_next_digit():
    sentence = "card four triple one one one one one double one one one one one one one"
    assert normalised(sentence) == "card 4111111111111111"
    source = words(sentence)
    result = redact(source, ALL)
    assert result.text == "card [CARD]"
    check_span(result, source, "[CARD]", 1, len(source) - 1)


def test_a_card_with_hyphens_in_one_token_and_mixed_digits_and_words():
    assert luhn_valid("4532015112830366")
    source = words("number 4532-0151-1283-0366. next")
    result = redact(source, ALL)
    assert result.text == "number [CARD]. next"
    check_span(result, source, "[CARD]", 1, 1)
    mixed = words("it's four five 3 2 0151 1283 0366 ok")
    assert redact(mixed, ALL).text == "it's [CARD] ok"


def test_a_card_glued_to_more_digits_is_still_found_on_word_boundaries():
    source = words("4111 1111 1111 1111 1225 is the expiry")
    result = redact(source, ALL)
    assert result.text == "[CARD] 1225 is the expiry"
    check_span(result, source, "[CARD]", 0, 3)


def test_a_16_digit_number_failing_luhn_stays():
    for sentence in ("ref 4111 1111 1111 1112 ok", "ref " + " ".join(["four"] + ["one"] * 14 + ["two"]) + " ok"):
        source = words(sentence)
        result = redact(source, ALL)
        assert result.words == source and result.counts == {}


# --- phones ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("number, region", [("4155552671", "US"), ("+14155552671", "US"), ("+442079460958", "US"),
                                            ("02079460958", "GB")])
def test_the_numbers_used_here_are_valid_for_phonenumbers(number, region):
    assert phonenumbers.is_valid_number(phonenumbers.parse(number, region))


@pytest.mark.parametrize("sentence, first, last", [
    ("call me on 415 555 2671 please", 3, 5),
    ("call me on (415) 555-2671 please", 3, 4),
    ("call me on +1 415-555-2671, please", 3, 4),
    ("call me on plus one four one five five five five two six seven one please", 3, 14),
    ("call me on four one five five five five two six seven one please", 3, 12),
    ("call me on four one five, five five five, two six seven one please", 3, 12),
    ("call me on +44 20 7946 0958. please", 3, 6),
    ("call me on four one five five five oh two six seven one please", 3, 12),
])
def test_phones_written_and_spoken(sentence, first, last):
    source = words(sentence)
    result = redact(source, ALL)
    check_span(result, source, "[PHONE]", first, last)
    assert result.counts == {"phone": 1}
    assert no_digits(result.text) and "one" not in result.text.split() and "plus" not in result.text


def test_the_default_region_decides_national_numbers():
    source = words("ring 020 7946 0958 today")
    assert redact(source, ALL).words == source
    gb = redact(source, RedactionConfig.parse("phone", phone_region="gb"))
    assert gb.text == "ring [PHONE] today"


def test_two_phones_and_a_card_all_go_and_no_digit_survives():
    source = words("card 4111 1111 1111 1111, home 415 555 2671 and work +44 20 7946 0958.")
    result = redact(source, ALL)
    assert result.text == "card [CARD], home [PHONE] and work [PHONE]."
    assert result.counts == {"card": 1, "phone": 2}
    assert no_digits(result.text)


def test_a_sentence_end_splits_runs():
    result = redact(words("I was born in 1998. 415 555 2671 is mine"), ALL)
    assert result.text == "I was born in 1998. [PHONE] is mine"


def test_a_phone_whose_groups_the_model_ended_with_periods_is_one_phone():
    """What the packaged model wrote for "my phone number is 415 555 2671" in a CI run."""
    source = words("My phone number is 415. 555. 2671.")
    result = redact(source, ALL)
    assert result.text == "My phone number is [PHONE]." and result.counts == {"phone": 1}
    check_span(result, source, "[PHONE]", 4, 6)
    kept = redact(words("We were 415. 555 people came later."), ALL)  # a short run, no phone: kept
    assert kept.counts == {} and "415." in kept.text


# --- e-mails -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("sentence, first, last, text", [
    ("mail john@example.com, thanks", 1, 1, "mail [EMAIL], thanks"),
    ("it's john dot smith at example dot com thanks", 1, 7, "it's [EMAIL] thanks"),
    ("it's john.smith at example.com.", 1, 3, "it's [EMAIL]."),
    ("it's j_smith99@mail.example.co.uk ok", 1, 1, "it's [EMAIL] ok"),
])
def test_emails_written_and_spoken(sentence, first, last, text):
    source = words(sentence)
    result = redact(source, RedactionConfig.parse("email"))
    assert result.text == text and result.counts == {"email": 1}
    check_span(result, source, "[EMAIL]", first, last)


@pytest.mark.parametrize("sentence", ["meet at the office", "I'll be there at five dot thirty",
                                      "look at the site dot com", "we're at home. Dot com bubble"])
def test_a_spoken_at_outside_an_address_is_no_email(sentence):
    source = words(sentence)
    assert redact(source, ALL).words == source


# --- real word lists of the packaged model (stripped by the backend; punctuation starts a word) -------

def test_a_phone_split_at_its_hyphens_is_one_phone():
    source = tokens(["Please", "call", "me", "at", "415", "-555", "-2671."])
    result = redact(source, ALL)
    assert [w.text for w in result.words] == ["Please", "call", "me", "at", "[PHONE]."]
    assert result.text == "Please call me at [PHONE]." and result.counts == {"phone": 1}
    check_span(result, source, "[PHONE]", 4, 6)


def test_a_card_split_at_its_commas_is_one_card():
    assert luhn_valid("4532015112830366")
    source = tokens(["My", "card", "number", "is", "4532", ",015", ",11283", ",0366"])
    result = redact(source, ALL)
    assert [w.text for w in result.words] == ["My", "card", "number", "is", "[CARD]"]
    assert result.text == "My card number is [CARD]" and result.counts == {"card": 1}
    check_span(result, source, "[CARD]", 4, 7)


def test_a_card_in_spaced_groups_is_one_card():
    source = tokens(["My", "card", "number", "is", "4532", "0151", "1283", "0366"])
    result = redact(source, ALL)
    assert result.text == "My card number is [CARD]" and result.counts == {"card": 1}
    check_span(result, source, "[CARD]", 4, 7)


@pytest.mark.parametrize("texts, first, last, text", [
    (["My", "email", "is", "Anna.org", "at", "gmail.com"], 3, 5, "My email is [EMAIL]"),
    (["Right,", "and", "at", "email.com"], 1, 3, "Right, [EMAIL]"),
    (["email", "anna", "at", "gmail", ".com"], 1, 4, "email [EMAIL]"),
    (["email", "anna.berg", "at", "gmail", ".com."], 1, 4, "email [EMAIL]."),
    (["mail", "anna", ".berg", "@gmail", ".com", "ok"], 1, 4, "mail [EMAIL] ok"),
])
def test_emails_as_the_model_splits_them(texts, first, last, text):
    source = tokens(texts)
    result = redact(source, RedactionConfig.parse("email"))
    assert result.text == text and result.counts == {"email": 1}
    check_span(result, source, "[EMAIL]", first, last)


@pytest.mark.parametrize("texts, first, last, placeholder", [
    (["call", "(415)", "555", "-2671"], 1, 3, "[PHONE]"),
    (["call", "415", "-", "555", "-", "2671", "now"], 1, 5, "[PHONE]"),
    (["call", "four", "one", "five", ",", "five", "five", "five", ",", "two", "six", "seven", "one"], 1, 12,
     "[PHONE]"),
    (["card", "4532", ",", "015", ",11283", ",0366", "ok"], 1, 5, "[CARD]"),
])
def test_a_lone_hyphen_or_comma_inside_a_number_keeps_the_run(texts, first, last, placeholder):
    source = tokens(texts)
    result = redact(source, ALL)
    check_span(result, source, placeholder, first, last)
    assert no_digits(result.text)


def test_a_pattern_matches_a_split_number():
    result = redact(tokens(["ssn", "123", "-45", "-6789", "ok"]), RedactionConfig.parse("id", SSN))
    assert result.text == "ssn [ID] ok" and result.counts == {"id": 1}


def test_raw_whisper_words_with_their_leading_spaces_work_too():
    source = tokens([" Please", " call", " me", " at", " 415", "-555", "-2671."])
    result = redact(source, ALL)
    assert result.text == "Please call me at [PHONE]." and result.counts == {"phone": 1}
    assert result.words[4].text == " [PHONE]."
    check_span(result, source, "[PHONE]", 4, 6)


@pytest.mark.parametrize("texts", [
    ["Your", "order", "77721,", "I", "arrive", "at", "1045", "tomorrow."],
    ["Your", "order", "number", "is", "55", ",312."],
    ["at", "10", ":45", "tomorrow"],
    ["on", "12", "/05", "/2024", "it", "started"],
    ["it", "cost", "1", ",299", "dollars."],
    ["it", "was", "$45", ".99", "in", "total"],
    ["ref", "4111", ",1111", ",1111", ",1112", "ok"],
    ["we", "arrive", "at", "10", ".30"],
    ["it", "was", "-5", "degrees"],
    ["meet", "at", "the", "office", "."],
    ["I'll", "be", "there", "at", "five", "dot", "thirty"],
    ["look", "at", "this", ".com", "bubble"],
    ["meet", "at", "the", ".com", "party"],
])
def test_split_words_that_are_no_card_phone_or_email_stay(texts):
    source = tokens(texts)
    result = redact(source, RedactionConfig.parse("all", SSN))
    assert result.words == source and all(a is b for a, b in zip(result.words, source))
    assert result.counts == {}


def test_text_joins_like_whisper_no_space_before_leading_punctuation():
    assert Redaction(tokens(["call", "me", "at", "[PHONE]."])).text == "call me at [PHONE]."
    assert Redaction(tokens(["It", "is", "4532", ",015", "ok"])).text == "It is 4532,015 ok"
    assert Redaction(tokens(["at", "415", "-555", "-2671.", "Thanks!"])).text == "at 415-555-2671. Thanks!"
    assert Redaction(tokens(["anna", "@gmail", ".com", "(home)", "50", "%", "it's"])).text == \
        "anna@gmail.com (home) 50% it's"
    assert Redaction(tokens([" Hello", "", " there", ","])).text == "Hello there,"
    assert Redaction([]).text == ""


# --- configured patterns and overlaps ----------------------------------------------------------------

def test_a_custom_pattern_written_and_spoken():
    config = RedactionConfig.parse("id", SSN)
    for sentence in ("my ssn is 123-45-6789 ok", "my ssn is one two three dash four five dash six seven eight nine ok"):
        source = words(sentence)
        result = redact(source, config)
        assert result.text == "my ssn is [ID] ok" and result.counts == {"id": 1}
        check_span(result, source, "[ID]", 3, len(source) - 2)


def test_one_span_per_word_email_first_then_card_then_phone_then_id():
    config = RedactionConfig.parse("all", r"\d{4} \d{4};;example")
    result = redact(words("card 4111 1111 1111 1111 mail john@example.com"), config)
    assert result.text == "card [CARD] mail [EMAIL]" and result.counts == {"card": 1, "email": 1}
    result = redact(words("id 1234 5678 here"), config)
    assert result.text == "id [ID] here" and result.counts == {"id": 1}


# --- what must stay ----------------------------------------------------------------------------------

@pytest.mark.parametrize("sentence", [
    "my order number is 12345678",
    "see you at 3:30 then", "three thirty pm works", "at 10:45 tomorrow",
    "it was $45.99 in total", "forty five dollars", "it cost 1,299 dollars.",
    "on March 3rd 2024 it started", "on 12/05/2024 it started",
    "two or three days", "in 1998 we moved", "one of the two options",
    "oh four one five", "double check it", "plus the fee",
])
def test_negatives_stay_exactly_as_they_were(sentence):
    source = words(sentence)
    config = RedactionConfig.parse("all", SSN)
    result = redact(source, config)
    assert result.words == source and all(a is b for a, b in zip(result.words, source))
    assert result.counts == {} and result.text == sentence


def test_redaction_off_returns_the_input_unchanged():
    source = words("card 4111 1111 1111 1111 mail john@example.com")
    for config in (RedactionConfig(), RedactionConfig.parse(""), RedactionConfig.parse(" , ")):
        result = redact(source, config)
        assert result.words == source and all(a is b for a, b in zip(result.words, source))
        assert result.counts == {} and result.text == "card 4111 1111 1111 1111 mail john@example.com"


# --- configuration -----------------------------------------------------------------------------------

def test_parse_kinds_and_patterns():
    assert RedactionConfig.parse(" Card, phone ,EMAIL ").kinds == {"card", "phone", "email"}
    assert RedactionConfig.parse("all").kinds == {"card", "phone", "email"}
    config = RedactionConfig.parse("all", SSN + " ;; [A-Z]{2}\\d{6}[A-D]", "gb")
    assert config.kinds == {"card", "phone", "email", "id"}
    assert config.patterns == (SSN, "[A-Z]{2}\\d{6}[A-D]") and config.phone_region == "GB"


@pytest.mark.parametrize("kinds, patterns, region, named", [
    ("card,cards", "", "US", "cards"),
    ("id", r"\d{3}-(\d{2}", "US", r"\d{3}-(\d{2}"),
    ("id", "", "US", "id"),
    ("card", SSN, "US", "id"),
    ("phone", "", "XX", "XX"),
])
def test_parse_errors_name_the_problem(kinds, patterns, region, named):
    with pytest.raises(RedactionConfigError) as raised:
        RedactionConfig.parse(kinds, patterns, region)
    assert named in str(raised.value)
    assert isinstance(raised.value, CallsttError) and isinstance(raised.value, ValueError)


def test_an_address_with_the_spoken_at_glued_in_is_still_an_address():
    """What the model wrote for "mary.jones@gmail.com" in one CI run: "Mary.jonesatgmail.com"."""
    for heard in ("My address is Mary.jonesatgmail.com", "My email is beater.brownatyahoo.com."):
        redacted = redact(words(heard), RedactionConfig.parse("email"))
        assert redacted.counts == {"email": 1} and "[EMAIL]" in redacted.text, redacted.text
    for kept in ("Download it from whatsapp.com today", "I looked at the chat.com page"):
        assert redact(words(kept), RedactionConfig.parse("email")).counts == {}, kept
    # The same address split into words elsewhere (the text reads "Mary.johnsatgmail.com" either way).
    for pieces in (["Mary.johnsatgmail", ".com"], ["Mary", ".johnsatgmail.com"]):
        split = [Word(text, 1.0 + n, 1.5 + n, 0.9) for n, text in enumerate(["My", "address", "is", *pieces])]
        redacted = redact(split, RedactionConfig.parse("email"))
        assert redacted.counts == {"email": 1} and redacted.text == "My address is [EMAIL]", redacted.text


def test_a_misheard_number_after_a_phone_or_card_cue_is_still_redacted():
    """What the model wrote in clean-clone runs for "415 555 2671" and a card: a digit lost, so no
    valid number is left; the cue in front says what it was."""
    config = RedactionConfig.parse("card,phone")
    for heard, kind in (("My phone number is 4555, 2671.", "phone"), ("Call me at 415552671", "phone"),
                        ("The card is 545, 2334, 3 010, 9 0 3", "card"),
                        ("Please charge my visa for 716-1089-971-6531", "card")):
        redacted = redact(words(heard), config)
        assert redacted.counts == {kind: 1} and not re.search(r"\d", redacted.text), (heard, redacted.text)
    for kept in ("Your ticket number is 53528.", "My order number is 77213456.", "I called on March 3, 2024",
                 "Call me back at 5 tomorrow.", "The card expires in 2027."):
        assert redact(words(kept), config).counts == {}, kept



# --- Interims: nothing redaction would remove from the final, even while it is being said ---------

SAID_WITH_NUMBERS = [
    "Sure, my card number is 4111 1111 1111 1111, and my phone number is 415 555 2671. Thank you.",
    "Sure, my card number is four one one one one one one one one one one one one one one one. Thanks.",
    "Call me on 415-555-2671 tomorrow, or write to john dot smith at example dot com please.",
    "My email is anna.berg@gmail.com and my order number is 7734.",
    "Number is 4111111111111111 and that is all.",
]


def interim_of(sentence: str, said: int, config: RedactionConfig = ALL) -> list[str]:
    """What an interim shows when the first `said` words of the sentence have been heard."""
    heard = words(sentence)[:said]
    return [word.text for word in heard[:shown_in_interim(heard, config)]]


@pytest.mark.parametrize("sentence", SAID_WITH_NUMBERS)
def test_no_interim_shows_a_word_that_the_final_redacts_or_a_number_being_said(sentence):
    final = redact(words(sentence), ALL)
    removed = {word.text for word in words(sentence)} - {word.text for word in final.words}
    assert removed, final.text  # the final does redact something here
    for said in range(len(words(sentence)) + 1):
        shown = interim_of(sentence, said)
        assert not set(shown) & removed, (said, shown)
        assert not any(re.search(r"\d", word) or word.lower().strip(",.") in SPOKEN_DIGITS for word in shown), shown


SPOKEN_DIGITS = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "oh"}


def test_an_interim_shows_the_words_before_a_number_and_grows_with_them_as_a_prefix():
    sentence = SAID_WITH_NUMBERS[0]
    assert interim_of(sentence, 5) == ["Sure,", "my", "card", "number", "is"]
    assert interim_of(sentence, 6) == interim_of(sentence, 12) == ["Sure,", "my", "card", "number", "is"]
    prefixes = [interim_of(sentence, said) for said in range(len(words(sentence)) + 1)]
    assert all(later[:len(earlier)] == earlier for earlier, later in zip(prefixes, prefixes[1:]))


def test_redaction_off_or_other_kinds_hold_back_nothing_they_would_not_redact():
    sentence = "My order 7734 ships at noon to anna at the office."
    assert interim_of(sentence, 11, RedactionConfig()) == sentence.split()
    # Only e-mail redaction: numbers stay; "at" followed by enough words that made no address stays.
    assert interim_of(sentence, 11, RedactionConfig.parse("email")) == sentence.split()
    # An "at" among the last words may still become an address: held until more is said.
    assert interim_of("write to anna at gmail", 5, RedactionConfig.parse("email")) == ["write", "to", "anna"]
    assert interim_of("meet me at the office", 5, RedactionConfig.parse("email")) == "meet me at the office".split()
    # Cards and phones on: any number is held back, since more digits may follow.
    assert interim_of(sentence, 11, RedactionConfig.parse("card,phone")) == ["My", "order"]
