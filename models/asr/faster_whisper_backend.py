"""The faster-whisper (CTranslate2) backend: one loaded model, one utterance at a time or several
in shared windows (`transcribe_clips`, `transcribe_windows`: models/asr/batching.py plans them).

Decoding is tuned for streaming: greedy or small beams, no temperature-fallback
loop, no conditioning on previous text (each utterance stands alone), and an
output length bounded by the audio's duration so a bad utterance cannot run away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel

from callstt.models.asr import faster_whisper_compat as compat
from callstt.models.asr.routing import Capabilities, Decoded, allowed_ranking
from callstt.models.asr.store import ModelFileError
from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.text.results import Segment, TranscriptionResult, Word
from callstt.models.text.vocabulary import NO_VOCABULARY, Vocabulary

log = logging.getLogger(__name__)

# Whisper's decoder holds 448 positions; keep room for the prompt tokens.
MAX_DECODER_TOKENS = 440
# Fast speech is ~4 words/s, ~1.5 tokens a word, plus timestamp tokens: 12 tokens/s is generous.
TOKENS_PER_SECOND = 12
MIN_NEW_TOKENS = 24
# Language detection first encodes only the utterance (plus this much padding) instead of a
# whole 30 s window: 10-20x cheaper on CPU. Below SURE_SHORT_DETECTION the answer is checked
# with the full window, which is what Whisper itself uses. The short window can be confidently
# wrong on a short real utterance: a 2.7 s English sentence (int16 PCM, as a call carries it)
# came out zh 0.61 / en 0.26 where the full window said en 0.99, so only a clear answer is kept.
SHORT_DETECTION_PAD_FRAMES = 200  # 2 s of feature frames (100 per second)
SURE_SHORT_DETECTION = 0.8


@dataclass(frozen=True)
class DecodeOptions:
    beam_size: int = 1
    word_timestamps: bool = True
    fast_language_detection: bool = True  # short-window detection first (see SURE_SHORT_DETECTION)


# A call's vocabulary (models/text/vocabulary.py) is cut to this many tokens: prompt and output share
# the decoder's 448 positions, and faster-whisper refuses a call whose sum exceeds them.
MAX_PROMPT_TOKENS = 160


def max_new_tokens_for(duration_s: float, prompt_tokens: int = 0) -> int:
    """Output budget for an utterance of this length (bounded output, bounded time), leaving
    room for a prompt of `prompt_tokens`."""
    budget = MAX_DECODER_TOKENS - 8 - (prompt_tokens + 2 if prompt_tokens else 0)
    return int(min(budget, MIN_NEW_TOKENS + TOKENS_PER_SECOND * duration_s))


class FasterWhisperBackend:
    """Transcribes 16 kHz mono float32 utterances with a CTranslate2 Whisper model."""

    backend_name = "faster-whisper"
    capabilities = Capabilities(shared_windows=True, devices=("cpu", "cuda", "auto"))

    def __init__(self, model_dir: Path, model_name: str, device: str = "cpu", compute_type: str = "int8",
                 cpu_threads: int = 0, options: DecodeOptions | None = None, num_workers: int = 1) -> None:
        self.model_name = model_name
        self.model_dir = Path(model_dir)
        self.options = options or DecodeOptions()
        # CTranslate2 runs up to `num_workers` calls at once (its inter_threads), each from its own
        # Python thread with `cpu_threads` threads; more calls than that would only queue inside it.
        self.model_lock = threading.BoundedSemaphore(max(1, num_workers))
        started = time.perf_counter()
        try:
            self.model = WhisperModel(str(model_dir), device=device, compute_type=compute_type,
                                      cpu_threads=cpu_threads, num_workers=max(1, num_workers),
                                      local_files_only=True)
        except (RuntimeError, ValueError, OSError) as error:
            raise ModelFileError(
                f"{self.model_dir / 'model.bin'} could not be loaded ({error}): the file is corrupted, "
                f"truncated or not a CTranslate2 Whisper model; delete it and let the model store "
                f"assemble it again, or reinstall/reconvert the model"
            ) from error
        self.is_multilingual = self.model.model.is_multilingual
        # What operators see on /models.
        self.details = {
            "path": str(self.model_dir), "size_bytes": (self.model_dir / "model.bin").stat().st_size,
            "compute_type": compute_type, "device": device, "cpu_threads": cpu_threads,
            "beam_size": self.options.beam_size, "multilingual": self.is_multilingual,
            "load_seconds": round(time.perf_counter() - started, 3),
        }

    def prompt(self, vocabulary: Vocabulary) -> tuple[str | None, int]:
        """The vocabulary's prompt (models/text/vocabulary.py) cut to MAX_PROMPT_TOKENS, and its length
        in tokens (None, 0: no vocabulary)."""
        text = vocabulary.prompt_text()
        if not text:
            return None, 0
        tokenizer = self.model.hf_tokenizer
        ids = tokenizer.encode(" " + text, add_special_tokens=False).ids
        if len(ids) > MAX_PROMPT_TOKENS:
            log.warning("a call's vocabulary is %d tokens; the model gets its first %d", len(ids), MAX_PROMPT_TOKENS)
            ids = ids[:MAX_PROMPT_TOKENS]
            text = tokenizer.decode(ids).strip()
        return text, len(ids)

    def language_ranking(self, audio: np.ndarray, allowed: Collection[str] = ()) -> list[tuple[str, float]]:
        """Whisper's language distribution for the audio, best first, among `allowed` when given
        (masked and renormalised: models.asr.routing.allowed_ranking). The short window first; the
        full 30 s window when the short one is unsure (below SURE_SHORT_DETECTION)."""
        with self.model_lock:
            if self.options.fast_language_detection:
                ranking = allowed_ranking(self._short_window_ranking(audio), allowed)
                if ranking[0][1] >= SURE_SHORT_DETECTION:
                    return ranking
            _, _, ranked = self.model.detect_language(audio)
        return allowed_ranking(ranked, allowed)

    def detect_language(self, audio: np.ndarray, allowed: Collection[str] = ()) -> tuple[str, float]:
        """The most likely language of the audio and its probability (see `language_ranking`)."""
        return self.language_ranking(audio, allowed)[0]

    def _short_window_ranking(self, audio: np.ndarray) -> list[tuple[str, float]]:
        """Whisper's language distribution from an encoder pass over the utterance alone (CTranslate2
        takes fewer than 3000 frames), padded as Whisper pads its 30 s window."""
        features = self.model.feature_extractor(audio)[:, :3000]
        frames = min(3000, features.shape[1] + features.shape[1] % 2 + SHORT_DETECTION_PAD_FRAMES)
        window = np.zeros((1, features.shape[0], frames), dtype=np.float32)
        window[0, :, :features.shape[1]] = features
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(window), to_cpu=False)
        return [(token[2:-2], float(probability)) for token, probability in self.model.model.detect_language(encoded)[0]]

    def transcribe(self, audio: np.ndarray, language: str | None = None,
                   vocabulary: Vocabulary = NO_VOCABULARY) -> TranscriptionResult:
        duration_s = len(audio) / SAMPLE_RATE
        if not self.is_multilingual:
            language = "en"
        prompt, prompt_tokens = self.prompt(vocabulary)
        with self.model_lock:
            segments_iter, info = self.model.transcribe(
                audio,
                language=language,
                beam_size=self.options.beam_size,
                temperature=0.0,  # a single pass: no fallback loop in the streaming path
                condition_on_previous_text=False,
                word_timestamps=self.options.word_timestamps,
                vad_filter=False,  # the pipeline's own VAD already cut the utterance
                max_new_tokens=max_new_tokens_for(duration_s, prompt_tokens),
                without_timestamps=False,
                initial_prompt=prompt,
            )
            segments = list(segments_iter)
        words = [
            Word(text=w.word.strip(), start=round(float(w.start), 3), end=round(float(w.end), 3),
                 probability=float(w.probability))
            for segment in segments for w in (segment.words or []) if w.word.strip()
        ]
        return TranscriptionResult(
            text=" ".join(s.text.strip() for s in segments if s.text.strip()),
            language=info.language,
            language_probability=float(info.language_probability),
            segments=[Segment(text=s.text.strip(), start=float(s.start), end=float(s.end),
                              avg_logprob=float(s.avg_logprob), no_speech_prob=float(s.no_speech_prob))
                      for s in segments],
            words=words,
            model_name=self.model_name,
            backend=self.backend_name,
        )

    def transcribe_clips(self, audio: np.ndarray, clips: list[tuple[float, float]], language: str,
                         batch_size: int, vocabulary: Vocabulary = NO_VOCABULARY) -> list[Decoded]:
        """The clips (start, end seconds) of `audio` through faster-whisper's BatchedInferencePipeline
        in one call: per clip, its words (times from `audio`'s start)."""
        pipeline = BatchedInferencePipeline(self.model)
        longest = max(end - start for start, end in clips)
        prompt, prompt_tokens = self.prompt(vocabulary)
        with self.model_lock:
            segments_iter, _ = pipeline.transcribe(
                audio, language=language, task="transcribe", beam_size=self.options.beam_size,
                temperature=0.0, word_timestamps=True, without_timestamps=False, vad_filter=False,
                clip_timestamps=[{"start": start, "end": end} for start, end in clips],
                batch_size=max(1, batch_size), max_new_tokens=max_new_tokens_for(longest, prompt_tokens),
                condition_on_previous_text=False,
                initial_prompt=prompt,
            )
            segments = list(segments_iter)
        per_clip: list[tuple[list[Word], list[float], float]] = [([], [], 0.0) for _ in clips]
        starts = [int(round(start * SAMPLE_RATE)) for start, _ in clips]
        for segment in segments:
            # segment.seek is the clip's offset in frames (100 per second): find its clip.
            offset_samples = segment.seek * SAMPLE_RATE // 100
            clip = min(range(len(clips)), key=lambda i: abs(starts[i] - offset_samples))
            words, logprobs, no_speech = per_clip[clip]
            words += [Word(w.word.strip(), round(float(w.start), 3), round(float(w.end), 3), float(w.probability))
                      for w in (segment.words or []) if w.word.strip()]
            logprobs.append(float(segment.avg_logprob))
            per_clip[clip] = (words, logprobs, max(no_speech, float(segment.no_speech_prob)))
        return [Decoded(words, (sum(lp) / len(lp)) if lp else 0.0, ns if lp else 1.0) for words, lp, ns in per_clip]

    def transcribe_windows(self, audios: list[np.ndarray], window_s: float, language: str,
                           vocabulary: Vocabulary = NO_VOCABULARY) -> list[Decoded]:
        """Each utterance's features cut or zero-padded to `window_s` (as faster-whisper pads to
        30 s), all through the encoder and decoder at once (models/asr/faster_whisper_compat.py)."""
        prompt, prompt_tokens = self.prompt(vocabulary)
        word_timestamps = self.options.word_timestamps
        durations = [len(audio) / SAMPLE_RATE for audio in audios]
        frames = int(window_s * compat.FRAMES_PER_SECOND)
        windows = np.stack([_padded(compat.features(self.model, audio), frames) for audio in audios])
        with self.model_lock:
            outputs = compat.forward_windows(
                self.model, windows, durations, language, beam_size=self.options.beam_size,
                word_timestamps=word_timestamps, max_new_tokens=max_new_tokens_for(max(durations), prompt_tokens),
                initial_prompt=prompt)
        return [_decoded(segments, duration, word_timestamps) for segments, duration in zip(outputs, durations)]


def _padded(features: np.ndarray, frames: int) -> np.ndarray:
    """Features cut or zero-padded to `frames` (as faster-whisper pads to 3000)."""
    features = features[..., :frames]
    return np.pad(features, ((0, 0), (0, frames - features.shape[-1])))


def _decoded(segments: list[dict], duration: float, word_timestamps: bool) -> Decoded:
    """forward_windows' segments of one utterance as its words, kept within its `duration`."""
    words: list[Word] = []
    for segment in segments:
        if word_timestamps:
            words += [Word(w["word"].strip(), round(float(w["start"]), 3), round(float(w["end"]), 3),
                           float(w["probability"])) for w in segment.get("words") or [] if w["word"].strip()]
        elif segment["text"].strip():
            words.append(Word(segment["text"].strip(), float(segment["start"]), float(segment["end"]), 1.0))
    words = [replace(w, start=min(max(w.start, 0.0), duration), end=min(max(w.end, 0.0), duration)) for w in words]
    logprobs = [float(s["avg_logprob"]) for s in segments]
    no_speech = max((float(s["no_speech_prob"]) for s in segments), default=1.0)
    return Decoded(words, sum(logprobs) / len(logprobs) if logprobs else 0.0, no_speech)
