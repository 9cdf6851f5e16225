"""Restricting language detection to a call's languages (CALLSTT_LANGUAGES): Whisper's language
distribution masked to the allowed languages and renormalised."""

from __future__ import annotations

import pytest

from callstt.models.asr.routing import best_allowed
from callstt.streams.settings import Settings

RANKED = [("th", 0.46), ("vi", 0.30), ("en", 0.10), ("zh", 0.14)]


def test_without_a_restriction_the_most_likely_language_wins():
    assert best_allowed(RANKED) == ("th", 0.46)
    assert best_allowed(reversed(RANKED)) == ("th", 0.46)  # order does not matter


def test_a_restriction_picks_among_the_allowed_languages_with_their_share():
    language, probability = best_allowed(RANKED, ("vi", "en"))
    assert language == "vi" and probability == pytest.approx(0.30 / 0.40)


def test_allowed_languages_the_model_does_not_know_leave_detection_unrestricted():
    assert best_allowed(RANKED, ("xx",)) == ("th", 0.46)


def test_the_setting_is_a_comma_separated_list_of_codes():
    assert Settings.from_env({"CALLSTT_LANGUAGES": " vi, EN ,"}).language_list == ("vi", "en")
    assert Settings.from_env({}).language_list == ()
