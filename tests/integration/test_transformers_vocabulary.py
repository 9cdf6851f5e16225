"""A call's vocabulary on the transformers (PhoWhisper) route, with the tiny local checkpoints of
test_vietnamese_route.py (no hub, random weights from a fixed seed).

The "speaking" checkpoint says "xin chào" whatever the audio and whatever the prompt, so the prompt's
effect on positions can be checked exactly: the same text, word times and near-certain log-probs with a
prompt as without. The "random" checkpoint's greedy output depends on everything before it, so it shows
the prompt reached the decoder: with a prompt it says something else, and exactly what transformers' own
`generate(prompt_ids=...)` says for the same audio and prompt.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from callstt.models.asr.faster_whisper_backend import MAX_PROMPT_TOKENS, max_new_tokens_for
from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.text.vocabulary import NO_VOCABULARY, Vocabulary
from callstt.models.voices.synth import VIETNAMESE_SENTENCES, synthesize
from tests.integration.test_vietnamese_route import (NO_TIMESTAMPS, PHRASE, SKIP_VIETNAMESE, assert_timings_inside,
                                                     needs_torch, write_tiny_checkpoint)

pytestmark = [pytest.mark.integration, needs_torch]

VOCABULARY = Vocabulary(hotwords=("Zyntra", "Kowalczyk"),
                        initial_prompt="Cuộc gọi hỗ trợ về bộ định tuyến Zyntra")


@pytest.fixture(scope="module")
def backends(tmp_path_factory) -> dict:
    if SKIP_VIETNAMESE:
        pytest.skip("CALLSTT_NO_VIETNAMESE=1: the Vietnamese extra was not installed")
    from callstt.models.asr.transformers_backend import TransformersBackend

    root = tmp_path_factory.mktemp("tiny-whisper-vocabulary")
    # One torch thread: two threads on a busy two-core machine spin-wait and run 10-40x slower.
    return {name: TransformersBackend(directory, directory.name, cpu_threads=1) for name, directory in (
        ("speaking", write_tiny_checkpoint(root / "tiny-vi", speak=PHRASE)),
        ("random", write_tiny_checkpoint(root / "tiny-random")))}


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    return synthesize(VIETNAMESE_SENTENCES[0], "vi")


def hf_generate_text(backend, audio: np.ndarray, prompt_text: str | None, max_new_tokens: int) -> str:
    """transformers' own greedy decode, forced to <|vi|> <|transcribe|> <|notimestamps|>, with the prompt
    from the tokenizer's own `get_prompt_ids` and the backend's suppressed tokens."""
    import torch

    input_features, _ = backend._features(audio)
    kwargs = {}
    if prompt_text:
        kwargs["prompt_ids"] = backend.tokenizer.get_prompt_ids(prompt_text, return_tensors="pt")
    with torch.inference_mode():
        tokens = backend.model.generate(input_features, language="vi", task="transcribe", return_timestamps=False,
                                        suppress_tokens=backend.suppress_tokens, max_new_tokens=max_new_tokens,
                                        **kwargs)[0].tolist()
    if NO_TIMESTAMPS in tokens:  # a version that returns the decoder's prefix too
        tokens = tokens[tokens.index(NO_TIMESTAMPS) + 1:]
    return backend.tokenizer.decode(tokens, skip_special_tokens=True).strip()


def no_speech_reference(backend, audio: np.ndarray, prefix: list[int]) -> float:
    """The no-speech probability as OpenAI's decoder defines it: the <|nocaptions|> probability at
    <|startoftranscript|>, after the prompt."""
    import torch

    nocaptions = backend.tokenizer.convert_tokens_to_ids("<|nocaptions|>")
    input_features, _ = backend._features(audio)
    with torch.inference_mode():
        encoder_outputs = backend.model.get_encoder()(input_features)
        logits = backend.model(encoder_outputs=encoder_outputs,
                               decoder_input_ids=torch.tensor([[*prefix, backend.sot_id]])).logits[0, -1]
    return float(torch.softmax(logits.float(), dim=-1)[nocaptions])


def assert_same_result(result, expected) -> None:
    """The same tokens (text, words, word times) and the same log-probabilities and no-speech probability
    (to float noise: two identical torch passes may differ in the last bits)."""
    assert (result.text, result.language, result.timestamps_note) == (expected.text, expected.language,
                                                                     expected.timestamps_note)
    assert [(w.text, w.start, w.end) for w in result.words] == [(w.text, w.start, w.end) for w in expected.words]
    assert [w.probability for w in result.words] == pytest.approx([w.probability for w in expected.words], rel=1e-4)
    assert len(result.segments) == len(expected.segments)
    for segment, other in zip(result.segments, expected.segments):
        assert (segment.text, segment.start, segment.end) == (other.text, other.start, other.end)
        assert segment.avg_logprob == pytest.approx(other.avg_logprob, rel=1e-4)
        assert segment.no_speech_prob == pytest.approx(other.no_speech_prob, rel=1e-4)


def test_an_empty_vocabulary_changes_nothing(backends, audio):
    noise = (np.random.default_rng(5).standard_normal(SAMPLE_RATE * 2) * 0.1).astype(np.float32)
    for backend in backends.values():
        for clip in (audio, noise):
            plain = backend.transcribe(clip, "vi")
            for empty in (NO_VOCABULARY, Vocabulary(), Vocabulary(hotwords=(" ", ""), initial_prompt="  ")):
                assert backend.prompt(empty) == (None, 0)
                assert_same_result(backend.transcribe(clip, "vi", empty), plain)
            # ... and it is what transformers' own generate says without a prompt.
            duration_s = len(clip) / SAMPLE_RATE
            assert plain.text == hf_generate_text(backend, clip, None, max_new_tokens_for(duration_s))


def test_the_vocabulary_conditions_the_decoder_as_transformers_own_prompt_ids_do(backends, audio):
    duration_s = len(audio) / SAMPLE_RATE
    prompt_text, prompt_tokens = backends["random"].prompt(VOCABULARY)
    assert prompt_text == VOCABULARY.prompt_text() and 0 < prompt_tokens < MAX_PROMPT_TOKENS

    # Random weights: what follows depends on the whole prefix, prompt included.
    random = backends["random"]
    plain, prompted = random.transcribe(audio, "vi"), random.transcribe(audio, "vi", VOCABULARY)
    assert prompted.text != plain.text
    assert prompted.text == hf_generate_text(random, audio, VOCABULARY.prompt_text(),
                                             max_new_tokens_for(duration_s, prompt_tokens))
    assert "Names and terms" not in prompted.text and "Zyntra" not in prompted.text
    assert math.isfinite(prompted.avg_logprob) and all(math.isfinite(w.probability) for w in prompted.words)
    assert_timings_inside(prompted, duration_s)

    # The speaking checkpoint says its phrase after any prompt: the prompt is not in the output, the
    # phrase's log-probs are read at its own positions (near-certain), its words keep their times, and
    # the no-speech probability is read at <|startoftranscript|>, after the prompt.
    speaking = backends["speaking"]
    plain, prompted = speaking.transcribe(audio, "vi"), speaking.transcribe(audio, "vi", VOCABULARY)
    assert prompted.text == plain.text == "xin chào"
    assert prompted.avg_logprob > -0.1 and all(w.probability > 0.9 for w in prompted.words)
    assert [w.text for w in prompted.words] == ["xin", "chào"]
    for with_prompt, without in zip(prompted.words, plain.words):
        assert with_prompt.start == pytest.approx(without.start, abs=0.06)
        assert with_prompt.end == pytest.approx(without.end, abs=0.06)
    assert_timings_inside(prompted, duration_s)
    prompt_ids = speaking.tokenizer.get_prompt_ids(VOCABULARY.prompt_text()).tolist()  # <|startofprev|> + text
    assert prompted.no_speech_prob == pytest.approx(no_speech_reference(speaking, audio, prompt_ids), rel=1e-3)
    assert plain.no_speech_prob == pytest.approx(no_speech_reference(speaking, audio, []), rel=1e-3)
    assert prompted.no_speech_prob != pytest.approx(plain.no_speech_prob, rel=1e-3)  # the prompt is before it


def test_a_very_long_vocabulary_is_cut_and_decoding_stays_inside_the_decoder(backends, audio):
    import torch

    long = Vocabulary(hotwords=tuple(f"Word{index}" for index in range(400)))
    random = backends["random"]
    text, tokens = random.prompt(long)
    assert tokens == MAX_PROMPT_TOKENS and long.prompt_text().startswith(text)  # its start is kept
    # Uncut, transformers' own generate refuses it: prompt and output would not fit 448 positions.
    input_features, _ = random._features(audio)
    with pytest.raises(ValueError), torch.inference_mode():
        random.model.generate(input_features, language="vi", task="transcribe", max_new_tokens=24,
                              prompt_ids=random.tokenizer.get_prompt_ids(long.prompt_text(), return_tensors="pt"))

    noise = (np.random.default_rng(7).standard_normal(SAMPLE_RATE * 15) * 0.1).astype(np.float32)
    result = random.transcribe(noise, "vi", long)  # 15 s: the longest utterance the pipeline sends
    assert len(result.words) <= max_new_tokens_for(15.0, MAX_PROMPT_TOKENS)
    assert "Word0" not in result.text and math.isfinite(result.avg_logprob)
    assert_timings_inside(result, 15.0)
    assert backends["speaking"].transcribe(audio, "vi", long).text == "xin chào"
