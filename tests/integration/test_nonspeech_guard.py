"""The guard (models/text/guard.py) on the real packaged base model and the synthetic corpus (streams/bench/evaluation/nonspeech.py).

Every clip, at 16 kHz and as a phone line delivers it (8 kHz mu-law), goes through the model
once, in English (the language a deployment with CALLSTT_LANGUAGES=en transcribes in; language
detection would double the time: `streams.bench.evaluation.guard_report.measure_guard(backend, language=None)`
measures that). Then:

- every non-speech clip: the guard drops whatever the model wrote for it;
- the sentence 30 dB under noise is inaudible (Silero peaks near 0.1 on it), so it is non-speech
  unless the model gets its words (half of them or more): then it heard real speech and the guard
  must keep them. Asserting either way would be unfair: a transcript that is right is not invented,
  and one that is wrong must go;
- every short answer ("Yes.", "Thank you.", "Bye.", ...): kept, whatever the model made of it
  (the guard judges invention, not accuracy);
- cross-talk and speech at 0 dB in noise: kept; cross-talk's transcript has one speaker's words.

Run with -s to see what the model alone invented and the figures.
"""

from __future__ import annotations

import pytest

from callstt.models.text.guard import GuardConfig, judge, vad_speech_ratio
from callstt.streams.bench.evaluation.guard_report import summarize, transcribe_corpus
from callstt.streams.bench.evaluation.nonspeech import corpus

pytestmark = pytest.mark.integration

CLIPS = corpus(phone_line=True)
CONFIG = GuardConfig()


def names(kind: str) -> list[str]:
    return [clip.name for clip in CLIPS if clip.kind == kind]


@pytest.fixture(scope="module")
def trials(base_model) -> dict:
    return {trial.clip.name: trial for trial in transcribe_corpus(base_model, CLIPS, language="en")}


def explain(trial) -> str:
    return (f"{trial.clip.name}: the model said {trial.result.text!r} (no_speech_prob "
            f"{trial.result.no_speech_prob:.2f}, avg_logprob {trial.result.avg_logprob:.2f}, speech ratio "
            f"{vad_speech_ratio(trial.audio, CONFIG.vad_threshold):.2f})")


@pytest.mark.parametrize("name", names("non_speech"))
def test_the_guard_drops_whatever_the_model_writes_for_non_speech(trials, name):
    trial = trials[name]
    reason = judge(trial.result, trial.audio, CONFIG)
    if trial.got_words:  # only the buried sentence has words to get
        assert reason is None, f"right words dropped as {reason}: {explain(trial)}"
    else:
        assert reason is not None, f"invented text kept: {explain(trial)}"


@pytest.mark.parametrize("name", names("short_answer"))
def test_the_guard_keeps_every_short_answer(trials, name):
    trial = trials[name]
    assert trial.said_words, explain(trial)
    assert judge(trial.result, trial.audio, CONFIG) is None, explain(trial)


@pytest.mark.parametrize("name", names("hard_speech"))
def test_the_guard_keeps_cross_talk_and_speech_in_noise(trials, name):
    trial = trials[name]
    assert judge(trial.result, trial.audio, CONFIG) is None, explain(trial)
    if name.startswith("cross_talk"):
        assert trial.got_words, f"no speaker's words in the cross-talk transcript: {explain(trial)}"


def test_figures(trials):
    report = summarize(list(trials.values()), CONFIG)
    print(f"\nnon-speech: {report['non_speech_seconds']} s; invented transcripts {report['invented']}, "
          f"per hour {report['invented_per_hour']}; dropped because {report['dropped_because']}")
    for clip, text in report["invented_by_model"].items():
        print(f"  the model alone on {clip}: {text!r}")
    print(f"short answers kept {report['short_answers']['kept']}/{report['short_answers']['of']}, hard speech kept "
          f"{report['hard_speech']['kept']}/{report['hard_speech']['of']}; model {report['model_seconds']} s, "
          f"guard {report['guard_ms_per_clip']} ms a clip")
    assert report["invented"]["model"] >= 1, "the corpus no longer provokes the model: this test proves nothing"
    assert report["invented"]["guard"] == 0
    assert report["short_answers"]["kept"] == report["short_answers"]["of"] == 24
    assert report["hard_speech"]["kept"] == report["hard_speech"]["of"] == 4
