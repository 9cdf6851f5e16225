"""The one place that uses faster-whisper below its public `transcribe` API.

faster-whisper pads every input to Whisper's 30 s window (3000 feature frames) before the
encoder, even in its BatchedInferencePipeline; CTranslate2's encoder itself takes shorter
inputs. `forward_windows` runs the batched pipeline's own per-batch step
(`BatchedInferencePipeline.forward`: encode, greedy or beam decode, timestamps, word
alignment) on features that the caller padded to a window of its choosing
(models/asr/batching.py, the window policy). tests/unit/test_faster_whisper_compat.py fails if an
upgrade removes or renames what this module relies on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from faster_whisper import BatchedInferencePipeline
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

FRAMES_PER_SECOND = 100  # Whisper's log-mel frames (10 ms hop)
FULL_WINDOW_FRAMES = 3000  # Whisper's 30 s window


def features(model, audio: np.ndarray) -> np.ndarray:
    """Log-mel features of one utterance (n_mels x frames), as the batched pipeline computes them."""
    return model.feature_extractor(audio)[..., :-1]


def forward_windows(model, windows: np.ndarray, durations: Sequence[float], language: str, *,
                    beam_size: int, word_timestamps: bool, max_new_tokens: int,
                    initial_prompt: str | None) -> list[list]:
    """One encoder+decoder pass over `windows` (batch x n_mels x frames, each an utterance padded
    to the same window) with `durations` (seconds of real audio in each); per window, its
    segments as faster-whisper's dicts (text, tokens, start, end, avg_logprob, no_speech_prob,
    words with start/end/probability when `word_timestamps`)."""
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language)
    # The values faster-whisper's BatchedInferencePipeline.transcribe uses for greedy decoding
    # at temperature 0 with the worker's settings (models/asr/batching.py _run_clips).
    options = TranscriptionOptions(
        beam_size=beam_size, best_of=5, patience=1, length_penalty=1, repetition_penalty=1,
        no_repeat_ngram_size=0, log_prob_threshold=-1.0, no_speech_threshold=0.6,
        compression_ratio_threshold=2.4, condition_on_previous_text=False, prompt_reset_on_temperature=0.5,
        temperatures=[0.0], initial_prompt=initial_prompt, prefix=None, suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, [-1]), without_timestamps=False,
        max_initial_timestamp=0.0, word_timestamps=word_timestamps,
        prepend_punctuations="\"'“¿([{-", append_punctuations="\"'.。,，!！?？:：”)]}、",
        multilingual=False, max_new_tokens=max_new_tokens, clip_timestamps="0",
        hallucination_silence_threshold=None, hotwords=None)
    pipeline = BatchedInferencePipeline(model)
    metadata = [{"offset": 0.0, "duration": duration, "segments": []} for duration in durations]
    return pipeline.forward(windows, tokenizer, metadata, options)
