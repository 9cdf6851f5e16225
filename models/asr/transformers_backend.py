"""The transformers backend: any Whisper-architecture checkpoint (PhoWhisper, openai/whisper-*, a local
fine-tune) through `WhisperForConditionalGeneration`, with torch on CPU (GPU when DEVICE=cuda).

It returns the same `TranscriptionResult` as the faster-whisper backend, decoded the same way for
streaming: greedy (or small beams), one pass at temperature 0 (no fallback loop), no conditioning
on previous text, and an output length bounded by the utterance's duration.

Decoding uses `<|notimestamps|>`, as transformers' own pipeline does for short audio and as
fine-tuned checkpoints such as PhoWhisper were trained: the utterance (already cut by the
pipeline's VAD, at most 15 s) is one segment. Word times come from the cross-attention alignment
(DTW over the checkpoint's `alignment_heads`); a checkpoint without alignment heads gets word
times spread over the utterance by length, and the result says so in `timestamps_note`.

A call's vocabulary (models/text/vocabulary.py) reaches the model as on the faster-whisper route: its
written prompt, cut to MAX_PROMPT_TOKENS (keeping its start, as `FasterWhisperBackend.prompt` does),
goes before <|startoftranscript|> as `<|startofprev|> prompt...` (generate's `prompt_ids`), and the
output budget leaves room for it (`max_new_tokens_for`). The prompt is context, never output: the
result holds only the tokens after <|notimestamps|>; the no-speech probability is read at
<|startoftranscript|>, after the prompt, as OpenAI's decoder reads it.

Like the other backend it is called from the worker's model thread, never on the event loop, one
utterance at a time.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Collection
from pathlib import Path

import numpy as np

from callstt.models.asr.faster_whisper_backend import MAX_PROMPT_TOKENS, DecodeOptions, max_new_tokens_for
from callstt.models.asr.routing import Capabilities, allowed_ranking
from callstt.models.asr.store import ModelFileError
from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.text.results import Segment, TranscriptionResult, Word
from callstt.models.text.vocabulary import NO_VOCABULARY, Vocabulary

log = logging.getLogger(__name__)

# Whisper's decoder holds 448 positions.
MAX_TARGET_POSITIONS = 448
SEGMENT_LEVEL_NOTE = ("word times are segment-level: this checkpoint has no alignment heads, so word times "
                      "are spread over the utterance by word length")
DTYPES = {"float32", "float16", "bfloat16"}
_LANGUAGE_TOKEN = re.compile(r"^<\|([a-z]{2,3}|haw|yue)\|>$")


def resolve_dtype(dtype: str, device: str) -> str:
    """'auto' is float32 on CPU (float16 matmuls are slow or missing there) and float16 on a GPU."""
    if dtype in ("", "auto"):
        return "float16" if device.startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise ModelFileError(f"unknown torch dtype '{dtype}': use auto, {', '.join(sorted(DTYPES))}")
    return dtype


class TransformersBackend:
    """Transcribes 16 kHz mono float32 utterances with a transformers Whisper checkpoint."""

    backend_name = "transformers"

    def __init__(self, checkpoint_dir: Path, model_name: str, device: str = "cpu", dtype: str = "auto",
                 cpu_threads: int = 0, options: DecodeOptions | None = None) -> None:
        try:
            # torch and transformers: the optional vietnamese extra, about 2 s to import
            import torch
            import transformers
            from transformers import AutoTokenizer, WhisperFeatureExtractor, WhisperForConditionalGeneration
        except ImportError as error:
            raise ModelFileError(f"the transformers backend needs torch and transformers ({error}): "
                                 f"pip install -e \".[vietnamese]\"") from error

        transformers.logging.set_verbosity_error()  # per-call deprecation chatter would flood the worker log
        self._torch = torch
        self.model_name = model_name
        self.model_dir = Path(checkpoint_dir)
        self.options = options or DecodeOptions()
        self.device = device
        self.dtype_name = resolve_dtype(dtype, device)
        self._lock = threading.Lock()
        if cpu_threads > 0:
            torch.set_num_threads(cpu_threads)  # torch's intra-op pool is per process
        started = time.perf_counter()
        try:
            self.model = WhisperForConditionalGeneration.from_pretrained(
                str(self.model_dir), dtype=getattr(torch, self.dtype_name), local_files_only=True).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
            if (self.model_dir / "preprocessor_config.json").is_file():
                self.feature_extractor = WhisperFeatureExtractor.from_pretrained(str(self.model_dir),
                                                                                 local_files_only=True)
            else:
                self.feature_extractor = WhisperFeatureExtractor(feature_size=self.model.config.num_mel_bins)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ModelFileError(f"{self.model_dir} could not be loaded as a transformers Whisper checkpoint "
                                 f"({error}): copy the checkpoint again (config.json, weights, tokenizer)") from error

        self.generation_config = complete_generation_config(self.model.generation_config, self.tokenizer)
        self.model.generation_config = self.generation_config
        config = self.generation_config
        self.sot_id = int(config.decoder_start_token_id)
        self.eot_id = int(_first(config.eos_token_id))
        self.no_timestamps_id = int(config.no_timestamps_token_id)
        self.no_speech_id = self._no_speech_token_id()
        self.prev_sot_id = self._special_token_id("<|startofprev|>")
        self.lang_to_id: dict[str, int] = dict(getattr(config, "lang_to_id", None) or {})
        self.is_multilingual = bool(self.lang_to_id)
        # Under <|notimestamps|> a timestamp token is noise: suppress them all, as CTranslate2 does
        # (transformers' generate and OpenAI's decoder leave them possible).
        self.suppress_tokens = sorted({*(getattr(config, "suppress_tokens", None) or []),
                                       *range(self.no_timestamps_id + 1, self.model.config.vocab_size)})
        self.alignment_heads = list(getattr(config, "alignment_heads", None) or [])
        self.word_timestamps = bool(self.alignment_heads) and self.options.word_timestamps
        # One utterance per model call (no shared windows); word times need the alignment heads.
        self.capabilities = Capabilities(word_times=self.word_timestamps, devices=("cpu", "cuda"))
        # What operators see on /models.
        self.details = {
            "path": str(self.model_dir), "dtype": self.dtype_name, "device": device,
            "cpu_threads": cpu_threads or torch.get_num_threads(), "beam_size": self.options.beam_size,
            "multilingual": self.is_multilingual,
            "word_timestamps": "alignment" if self.word_timestamps else "segment-level",
            "load_seconds": round(time.perf_counter() - started, 3),
        }

    # --- helpers -----------------------------------------------------------------------------

    def _special_token_id(self, token: str) -> int | None:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        return token_id if isinstance(token_id, int) and token_id != self.tokenizer.unk_token_id else None

    def _no_speech_token_id(self) -> int | None:
        for token in ("<|nospeech|>", "<|nocaptions|>"):
            token_id = self._special_token_id(token)
            if token_id is not None:
                return token_id
        return None

    def _prompt_ids(self, vocabulary: Vocabulary) -> tuple[str | None, list[int]]:
        """The vocabulary's prompt text and its tokens (without <|startofprev|>), cut to
        MAX_PROMPT_TOKENS by the rule of `FasterWhisperBackend.prompt`; (None, []) without a vocabulary."""
        text = vocabulary.prompt_text()
        if not text:
            return None, []
        if self.prev_sot_id is None:
            log.warning("%s has no <|startofprev|> token: a call's vocabulary cannot be applied", self.model_name)
            return None, []
        # Text only: a special token spelled in a hotword ("<|en|>") stays out of the prompt.
        ids = [token for token in self.tokenizer.encode(" " + text, add_special_tokens=False)
               if token < self.eot_id]
        if len(ids) > MAX_PROMPT_TOKENS:
            log.warning("a call's vocabulary is %d tokens; the model gets its first %d", len(ids), MAX_PROMPT_TOKENS)
            ids = ids[:MAX_PROMPT_TOKENS]
            text = self.tokenizer.decode(ids).strip()
        return (text, ids) if ids else (None, [])

    def prompt(self, vocabulary: Vocabulary) -> tuple[str | None, int]:
        """As `FasterWhisperBackend.prompt`: the vocabulary's prompt cut to MAX_PROMPT_TOKENS and its
        length in tokens (None, 0: no vocabulary)."""
        text, ids = self._prompt_ids(vocabulary)
        return text, len(ids)

    def _features(self, audio: np.ndarray):
        features = self.feature_extractor(np.asarray(audio, dtype=np.float32), sampling_rate=SAMPLE_RATE,
                                          return_tensors="pt", return_attention_mask=True)
        input_features = features.input_features.to(self.device, getattr(self._torch, self.dtype_name))
        return input_features, features.attention_mask.to(self.device)

    def _first_step(self, encoder_outputs):
        """Probabilities after <|startoftranscript|>: language identification and no-speech."""
        torch = self._torch
        decoder_input_ids = torch.tensor([[self.sot_id]], device=self.device)
        logits = self.model(encoder_outputs=encoder_outputs, decoder_input_ids=decoder_input_ids).logits[0, -1]
        return torch.softmax(logits.float(), dim=-1)

    # --- the Backend protocol ----------------------------------------------------------------

    def language_ranking(self, audio: np.ndarray, allowed: Collection[str] = ()) -> list[tuple[str, float]]:
        """The language distribution of the audio, best first (among the checkpoint's languages,
        and among `allowed` when given)."""
        if not self.lang_to_id:
            return [("en", 1.0)]
        with self._lock, self._torch.inference_mode():
            input_features, _ = self._features(audio)
            probs = self._first_step(self.model.get_encoder()(input_features))
        tokens = list(self.lang_to_id.items())
        language_probs = probs[[token_id for _, token_id in tokens]]
        language_probs = language_probs / language_probs.sum().clamp_min(1e-12)
        return allowed_ranking([(token[2:-2], float(p)) for (token, _), p in zip(tokens, language_probs.tolist())],
                               allowed)

    def detect_language(self, audio: np.ndarray, allowed: Collection[str] = ()) -> tuple[str, float]:
        """The most likely language of the audio and its probability (see `language_ranking`)."""
        return self.language_ranking(audio, allowed)[0]

    def transcribe(self, audio: np.ndarray, language: str | None = None,
                   vocabulary: Vocabulary = NO_VOCABULARY) -> TranscriptionResult:
        torch = self._torch
        duration_s = len(audio) / SAMPLE_RATE
        _, prompt_ids = self._prompt_ids(vocabulary)
        # The decoder's prefix: [<|startofprev|> prompt...] <|startoftranscript|> [language task] <|notimestamps|>.
        prefix = [self.prev_sot_id, *prompt_ids] if prompt_ids else []
        if language and self.lang_to_id and f"<|{language}|>" not in self.lang_to_id:
            language = None  # a language the checkpoint does not know: let it decide
        with self._lock, torch.inference_mode():
            input_features, attention_mask = self._features(audio)
            encoder_outputs = self.model.get_encoder()(input_features)
            language_probability = 1.0
            if self.is_multilingual and not language:
                language, language_probability = self._detect_from(encoder_outputs)
            start_length = 4 if self.is_multilingual else 2  # sot, [language, task,] notimestamps
            kwargs = dict(
                encoder_outputs=encoder_outputs, task="transcribe", return_timestamps=False,
                return_dict_in_generate=True, num_beams=self.options.beam_size, do_sample=False,
                condition_on_prev_tokens=False, force_unique_generate_call=True, suppress_tokens=self.suppress_tokens,
                max_new_tokens=min(max_new_tokens_for(duration_s, len(prompt_ids)),
                                   MAX_TARGET_POSITIONS - len(prefix) - start_length - 1),
            )
            if prefix:
                kwargs["prompt_ids"] = torch.tensor(prefix, device=self.device)
            if self.is_multilingual:
                kwargs["language"] = language
            if self.word_timestamps:
                kwargs.update(return_token_timestamps=True, attention_mask=attention_mask)
            output = self.model.generate(**kwargs)
            sequence = output["sequences"][:1]
            token_times = output["token_timestamps"][0].tolist() if self.word_timestamps else None
            if prefix and sequence[0, :len(prefix)].tolist() != prefix:
                # transformers 5.x returns the prompt in `sequences`; should a version leave it out, put it back
                # so that positions below (and token_times) count from the decoder's first position.
                sequence = torch.cat([torch.tensor([prefix], device=sequence.device, dtype=sequence.dtype),
                                      sequence], dim=1)
            if token_times is not None and len(token_times) < sequence.shape[1]:
                token_times = [0.0] * (sequence.shape[1] - len(token_times)) + token_times
            # One teacher-forced pass over the whole decoder input (prompt included) gives every token's
            # log-probability (greedy or beam search alike; among the tokens decoding allowed, as
            # faster-whisper reports them) and, at <|startoftranscript|>, the no-speech probability.
            sot_index = len(prefix)
            logits = self.model(encoder_outputs=encoder_outputs, decoder_input_ids=sequence).logits[0].float()
            no_speech_prob = (float(torch.softmax(logits[sot_index], dim=-1)[self.no_speech_id])
                              if self.no_speech_id is not None else 0.0)
            logits[:, self.suppress_tokens] = float("-inf")
            logprobs_all = torch.log_softmax(logits, dim=-1)
        sequence = sequence[0].tolist()
        # The first generated token's position (the prompt holds no special token, so the first
        # <|notimestamps|> is the prefix's own).
        offset = (sequence.index(self.no_timestamps_id, sot_index) + 1 if self.no_timestamps_id in sequence[sot_index:]
                  else sot_index + start_length)
        text_ids, text_logprobs, text_positions, avg_logprob = self._generated_text(sequence, offset, logprobs_all)
        words = self._words(text_ids, text_logprobs, text_positions, token_times, duration_s)
        text = self.tokenizer.decode(text_ids, skip_special_tokens=True).strip()
        segments = [Segment(text=text, start=0.0, end=duration_s, avg_logprob=avg_logprob,
                            no_speech_prob=no_speech_prob)] if text else []
        return TranscriptionResult(
            text=text, language=language or "en", language_probability=language_probability,
            segments=segments, words=words, model_name=self.model_name, backend=self.backend_name,
            timestamps_note="" if self.word_timestamps else SEGMENT_LEVEL_NOTE,
        )

    def _detect_from(self, encoder_outputs) -> tuple[str, float]:
        """The most likely language at the first decoding step, and its share of the languages."""
        first = self._first_step(encoder_outputs)
        language_ids = list(self.lang_to_id.values())
        language_probs = first[language_ids] / first[language_ids].sum().clamp_min(1e-12)
        best = int(language_probs.argmax())
        return self.tokenizer.convert_ids_to_tokens(language_ids[best])[2:-2], float(language_probs[best])

    def _generated_text(self, sequence: list[int], offset: int,
                        logprobs_all) -> tuple[list[int], list[float], list[int], float]:
        """From the generated tokens (`sequence[offset:]`): the text tokens up to <|endoftext|>, their
        log-probabilities and sequence positions, and the decode's average log-probability."""
        generated = sequence[offset:]
        logprobs = [float(logprobs_all[offset + index - 1, token]) for index, token in enumerate(generated)]
        text_ids, text_logprobs, text_positions = [], [], []
        decoded = len(generated)
        for index, (token, logprob) in enumerate(zip(generated, logprobs)):
            if token == self.eot_id:
                decoded = index + 1
                break
            if token > self.eot_id:  # special and timestamp tokens carry no text
                continue
            text_ids.append(token)
            text_logprobs.append(logprob)
            text_positions.append(offset + index)
        finite = [value for value in logprobs[:decoded] if math.isfinite(value)]
        return text_ids, text_logprobs, text_positions, (sum(finite) / len(finite) if finite else 0.0)

    def _words(self, token_ids: list[int], logprobs: list[float], positions: list[int],
               token_times: list[float] | None, duration_s: float) -> list[Word]:
        groups = group_words(self.tokenizer, token_ids)
        if not groups:
            return []
        if token_times is not None:
            # token_times[p] is when the token at sequence position p starts; it ends where the next starts.
            spans = []
            for _, indices in groups:
                start = token_times[positions[indices[0]]]
                end_position = positions[indices[-1]] + 1
                end = token_times[end_position] if end_position < len(token_times) else token_times[-1]
                spans.append((start, end))
        else:
            spans = spread_over(duration_s, [len(text) for text, _ in groups])
        words = []
        for (text, indices), (start, end) in zip(groups, spans):
            start = min(max(round(float(start), 3), 0.0), duration_s)
            end = min(max(round(float(end), 3), start), duration_s)
            probability = sum(math.exp(logprobs[i]) for i in indices) / len(indices)
            words.append(Word(text=text, start=start, end=end, probability=min(probability, 1.0)))
        return words


def _first(value):
    return value[0] if isinstance(value, (list, tuple)) else value


def group_words(tokenizer, token_ids: list[int]) -> list[tuple[str, list[int]]]:
    """Group text tokens into words: a piece that starts with a space starts a word; a multi-byte
    character split over several tokens is kept whole. Returns (word, indices into token_ids)."""
    pieces: list[tuple[str, list[int]]] = []
    pending: list[int] = []
    for index in range(len(token_ids)):
        pending.append(index)
        text = tokenizer.decode([token_ids[i] for i in pending])
        if "\ufffd" not in text:
            pieces.append((text, pending))
            pending = []
    if pending:
        pieces.append((tokenizer.decode([token_ids[i] for i in pending]), pending))
    words: list[tuple[str, list[int]]] = []
    for text, indices in pieces:
        if not words or text[:1].isspace():
            words.append((text, list(indices)))
        else:
            words[-1] = (words[-1][0] + text, words[-1][1] + indices)
    return [(text.strip(), indices) for text, indices in words if text.strip()]


def spread_over(duration_s: float, lengths: list[int]) -> list[tuple[float, float]]:
    """Segment-level times for words: the span split in proportion to each word's length."""
    total = sum(max(length, 1) for length in lengths)
    spans, position = [], 0.0
    for length in lengths:
        share = duration_s * max(length, 1) / total
        spans.append((position, position + share))
        position += share
    return spans


def complete_generation_config(generation_config, tokenizer):
    """Fill in what transformers' Whisper generate needs for a forced language and task when an
    older or fine-tuned checkpoint's generation config lacks it (lang_to_id, task_to_id,
    no_timestamps_token_id, ...), from the tokenizer's special tokens."""
    config = generation_config
    vocab = tokenizer.get_vocab()

    def token_id(token: str) -> int | None:
        return vocab.get(token)

    if getattr(config, "decoder_start_token_id", None) is None:
        config.decoder_start_token_id = token_id("<|startoftranscript|>")
    if getattr(config, "eos_token_id", None) is None:
        config.eos_token_id = token_id("<|endoftext|>")
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = _first(config.eos_token_id)
    if not getattr(config, "no_timestamps_token_id", None):
        config.no_timestamps_token_id = token_id("<|notimestamps|>")
    if not getattr(config, "lang_to_id", None):
        # torch and transformers: the optional vietnamese extra, about 2 s to import
        from transformers.models.whisper.tokenization_whisper import LANGUAGES

        languages = {f"<|{code}|>" for code in LANGUAGES}
        lang_to_id = {token: index for token, index in vocab.items() if token in languages}
        if lang_to_id:
            config.lang_to_id = dict(sorted(lang_to_id.items(), key=lambda item: item[1]))
    if not getattr(config, "task_to_id", None) and token_id("<|transcribe|>") is not None:
        config.task_to_id = {"transcribe": token_id("<|transcribe|>"), "translate": token_id("<|translate|>")}
    if getattr(config, "is_multilingual", None) is None:
        config.is_multilingual = bool(getattr(config, "lang_to_id", None))
    # Old checkpoints force the prompt through forced_decoder_ids, which conflicts with a forced language.
    config.forced_decoder_ids = None
    return config
