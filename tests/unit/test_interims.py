"""Interim cuts and their stable prefix (models/audio/endpointing.py, streams/core/interims.py): pure logic, no model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from callstt.models.audio.endpointing import WINDOW_SAMPLES, EndpointConfig, Endpointer, EndpointState
from callstt.schemas.records import TranscriptWord
from callstt.streams.core.assembly import Utterance
from callstt.streams.core.interims import Interims, choose, text_of

INTERIMS = EndpointConfig(pad_ms=200, interim_ms=960)  # the first after 10 voiced windows, then every 30


def cuts_of(endpointer: Endpointer, probabilities):
    state, found = EndpointState(), []
    for probability in probabilities:
        cuts, state = endpointer.feed(state, [probability])
        found += cuts
    return found


def test_an_open_utterance_gives_an_interim_every_interval_of_voiced_time_and_then_its_final():
    cuts = cuts_of(Endpointer(INTERIMS), [0.0] * 5 + [0.9] * 45 + [0.1] * 3 + [0.9] * 50 + [0.0] * 30)
    interims, finals = [c for c in cuts if c.interim], [c for c in cuts if not c.interim]
    assert [c.revision for c in interims] == [1, 2, 3, 4] and len(finals) == 1  # the first at a third of it
    assert all(c.start_sample == finals[0].start_sample for c in interims)
    # Each holds the audio up to where the endpointer was: the speech so far, growing.
    assert [c.end_sample // WINDOW_SAMPLES for c in interims] == [15, 35, 68, 98]
    assert [c.speech_ms for c in interims] == [320, 960, 1920, 2880]


def test_no_interims_for_silence_blips_or_when_turned_off():
    assert cuts_of(Endpointer(INTERIMS), [0.0] * 100 + [0.9] * 5 + [0.0] * 40) == []
    assert not any(c.interim for c in cuts_of(Endpointer(replace(INTERIMS, interim_ms=0)), [0.9] * 50 + [0.0] * 30))


def words(*texts: str, start_ms: int = 0) -> list[TranscriptWord]:
    return [TranscriptWord(text=f" {text}", start_ms=start_ms + 300 * i, end_ms=start_ms + 300 * i + 250,
                           probability=0.9) for i, text in enumerate(texts)]


def interim(revision: int, index: int = 0) -> Utterance:
    return Utterance("call", "caller", index, np.zeros(1600, dtype=np.float32), start_ms=0, end_ms=1000 * revision,
                     reason="interim", hint="", last_capture_ts_ms=10_000 + 1000 * revision,
                     last_received_ts_ms=0, revision=revision)


def test_words_become_stable_when_two_hypotheses_agree_and_then_never_change():
    kept = Interims()
    first = kept.revise(interim(1), words("hello", "there", "how"))
    assert first.stable == 0  # nothing to agree with yet
    second = kept.revise(interim(2), words("Hello,", "there", "who", "can"))
    assert second.stable == 2 and text_of(second.words[:2]) == "Hello, there"  # agreed: stable from here on
    # The model changes its mind about a stable word: the stable words stay, its later words follow.
    third = kept.revise(interim(3), words("Yellow", "hair", "how", "can", "I"))
    assert text_of(third.words) == "Hello, there how can I" and third.stable == 2
    fourth = kept.revise(interim(4), words("hello", "there", "how", "can", "I", "help"))
    assert fourth.stable == 5 and fourth.words[:2] == third.words[:2]


def test_a_repeated_or_older_interim_has_nothing_new_and_the_final_closes_the_utterance():
    kept = Interims()
    kept.revise(interim(2), words("hello"))
    assert kept.revise(interim(2), words("hello")) is None and kept.revise(interim(1), words("x")) is None
    kept.close(replace(interim(0), revision=0))
    assert len(kept) == 0
    assert kept.revise(interim(1, index=1), words("next")).revision == 1  # the next utterance starts afresh


def test_an_interim_that_ends_after_its_final_was_decided_is_dropped():
    # Interims run in their own lane beside the finals: the final may be decided first.
    kept = Interims()
    kept.revise(interim(1), words("hello"))
    kept.close(replace(interim(3), revision=0, reason="silence"))  # the final, cut after revision 2's audio
    assert kept.revise(interim(2), words("hello", "there")) is None  # never published after its final
    # the same ids again later (a stream that starts over counts from 0, with later audio): shown
    again = replace(interim(1), last_capture_ts_ms=50_000)
    assert kept.revise(again, words("hi")).words == tuple(words("hi"))


def test_finals_first_then_the_newest_interim_of_each_stream_while_the_worker_keeps_up():
    a, b, old = interim(2), replace(interim(1), stream_id="agent"), replace(interim(1), stream_id="late",
                                                                             last_capture_ts_ms=1_000)
    items = [(None, a), (None, b), (None, old)]
    waiting = choose(items, finals_waiting=True, newer=set(), now_ms=12_500, budget_ms=1600, room=8)
    assert waiting.run == [] and waiting.deferred == [(None, b), (None, a)] and waiting.skipped == 1  # late: too old
    choice = choose(items, finals_waiting=False, newer={("call", "agent")}, now_ms=12_500, budget_ms=1600, room=8)
    assert [u for _, u in choice.run] == [a] and choice.skipped == 2  # agent coalesced, late too old
    no_room = choose(items, False, set(), now_ms=11_500, budget_ms=1600, room=1)
    assert no_room.run == [(None, b)] and no_room.deferred == [(None, a)]  # oldest first, the other waits
    lane_busy = choose(items, False, set(), now_ms=11_500, budget_ms=1600, room=8, lane_busy=True)
    assert lane_busy.run == [] and lane_busy.deferred == [(None, b), (None, a)]  # one interim call at a time
