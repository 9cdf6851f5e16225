"""The Vietnamese (PhoWhisper) route without any hub: a tiny Whisper checkpoint built here.

The checkpoint is transformers' WhisperConfig with small dimensions and random weights from a
fixed seed, with the real multilingual tokenizer of the packaged base model (its tokenizer.json)
and a generation config like openai/whisper's (languages, tasks, suppressed tokens, alignment heads).
Random weights say nothing useful, and the pipeline drops empty results (streams/core/transcripts.py
`is_non_speech`), so the "speaking" checkpoints also have a phrase planted in them (see
`plant_phrase`): whatever the audio, greedy decoding says "xin chào" and stops. The "random"
checkpoint has nothing planted: its garbage exercises the conversion (token parity) and the
output bound.

(a) transformers backend: structure and timings; (b) conversion with models/asr/convert.py, then the
faster-whisper backend; (c) the same greedy tokens from transformers and from CTranslate2;
(d) a Vietnamese call through a real worker names the route's model and backend. Plus: the converted
route says what the transformers route says. How much faster it is is a measurement, not a test:
`python -m callstt.models.asr.convert ... --benchmark` (models.asr.convert.benchmark) prints it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from callstt.models.asr.faster_whisper_backend import FasterWhisperBackend, max_new_tokens_for
from callstt.models.asr.store import choose_checkpoint, converted_dir_for, is_ctranslate2_dir, resolve_model
from callstt.models.audio.decoding import SAMPLE_RATE
from callstt.models.voices.synth import ENGLISH_SENTENCES, VIETNAMESE_SENTENCES, conversation, synthesize
from callstt.streams.client.producer import ChunkPlan, iter_chunks
from tests.pipeline import WorkerProcess, by_call

pytestmark = pytest.mark.integration
# The route's tests run whenever the project is set up normally (scripts/setup installs torch); only an
# explicit opt-out of the Vietnamese extra (CALLSTT_NO_VIETNAMESE=1) skips them. A missing torch otherwise fails.
SKIP_VIETNAMESE = os.environ.get("CALLSTT_NO_VIETNAMESE") == "1"
needs_torch = pytest.mark.skipif(SKIP_VIETNAMESE, reason="CALLSTT_NO_VIETNAMESE=1: the Vietnamese extra was not installed")

PHRASE = " xin chào"  # what the speaking checkpoints say
SEED = 1234
SOT, EOT, TRANSCRIBE, NO_TIMESTAMPS = 50258, 50257, 50359, 50363
VI = 50278  # <|vi|>


# --- the tiny checkpoint ------------------------------------------------------------------------------

# Whisper's size names as (d_model, layers, attention heads, feed-forward width): the tests use "test"
# (about 30 MB, built in a second); "tiny" is the shape of whisper-tiny and PhoWhisper-tiny (for timing the routes).
SIZES = {"test": (64, 2, 4, 128), "tiny": (384, 4, 6, 1536)}


def write_tiny_checkpoint(directory: Path, *, speak: str | None = None, alignment_heads: bool = True,
                          seed: int = SEED, size: str = "test") -> Path:
    """A small multilingual Whisper checkpoint in transformers format, random weights from `seed`."""
    import torch
    from transformers import (AutoTokenizer, GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration)

    base = resolve_model("base")  # the packaged model: its tokenizer and its generation settings
    base_config = json.loads((base / "config.json").read_text())
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(base / "tokenizer.json", directory / "tokenizer.json")
    added = json.loads((base / "tokenizer.json").read_text())["added_tokens"]
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "WhisperTokenizer", "model_max_length": 448,
        "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "additional_special_tokens": [t["content"] for t in added if t["content"] != "<|endoftext|>"],
    }))
    WhisperFeatureExtractor(feature_size=80).save_pretrained(directory)  # preprocessor_config.json
    tokenizer = AutoTokenizer.from_pretrained(directory)

    d_model, layers, heads, ffn = SIZES[size]
    config = WhisperConfig(
        vocab_size=51865, num_mel_bins=80, d_model=d_model, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        max_source_positions=1500, max_target_positions=448, decoder_start_token_id=SOT,
        bos_token_id=EOT, eos_token_id=EOT, pad_token_id=EOT,
        tie_word_embeddings=False,  # an output projection of its own (untied random weights decode varied tokens)
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    languages = tokenizer.convert_ids_to_tokens(base_config["lang_ids"])
    generation = GenerationConfig(
        decoder_start_token_id=SOT, bos_token_id=EOT, eos_token_id=EOT, pad_token_id=EOT, max_length=448,
        lang_to_id={token: tokenizer.convert_tokens_to_ids(token) for token in languages},
        task_to_id={"translate": 50358, "transcribe": TRANSCRIBE}, no_timestamps_token_id=NO_TIMESTAMPS,
        prev_sot_token_id=50361, is_multilingual=True, max_initial_timestamp_index=50,
        suppress_tokens=base_config["suppress_ids"], begin_suppress_tokens=base_config["suppress_ids_begin"],
    )
    if alignment_heads:
        generation.alignment_heads = [[layers - 1, head] for head in range(heads)]  # the top decoder layer's heads
    model.generation_config = generation
    if speak:
        plant_phrase(model, tokenizer.encode(speak, add_special_tokens=False), seed)
    model.save_pretrained(directory)
    return directory


def plant_phrase(model, phrase_ids: list[int], seed: int, strength: float = 4.0) -> None:
    """Make greedy decoding say `phrase_ids` and stop, whatever the audio, with either prompt:

        ... <|transcribe|> -> <|0.00|> -> phrase... -> <|1.00|> -> <|endoftext|>   (timestamps: faster-whisper)
        ... <|notimestamps|> -> phrase... -> <|endoftext|>                       (transformers backend, parity)

    The decoder's next token then depends only on the current one: each source token gets an input
    embedding with unit-variance entries, orthogonal to the other sources', which dominates the
    residual stream (the random layers add ~0.02-sized terms), and the output projection's row of
    its successor points the same way, so the successor's logit (~strength * sqrt(d_model) = 32)
    dwarfs the random ones (~0.16) and survives int8 quantization. After the phrase's last token
    <|endoftext|> is the runner-up (half strength): it wins where timestamps are suppressed
    (<|notimestamps|>). The closing timestamp matters to faster-whisper: without it, it would decode
    the audio after the last word again. Everything else stays random.
    """
    import torch

    assert len(set(phrase_ids)) == len(phrase_ids), "a planted phrase needs distinct tokens"
    timestamp_0 = NO_TIMESTAMPS + 1
    timestamp_end = timestamp_0 + 50  # <|1.00|>
    successors = {TRANSCRIBE: timestamp_0, timestamp_0: phrase_ids[0], NO_TIMESTAMPS: phrase_ids[0],
                  **dict(zip(phrase_ids, phrase_ids[1:])), phrase_ids[-1]: timestamp_end, timestamp_end: EOT}
    runners_up = {phrase_ids[-1]: EOT}
    sources = list(successors)
    d_model = model.config.d_model
    vectors = torch.randn(len(sources), d_model, generator=torch.Generator().manual_seed(seed + 1))
    vectors -= vectors.mean(dim=1, keepdim=True)  # layer norm removes the mean: keep the vectors zero-mean
    orthonormal, _ = torch.linalg.qr(vectors.T)  # columns: orthonormal, still zero-mean
    directions = {source: orthonormal[:, index] for index, source in enumerate(sources)}
    embed, project = model.model.decoder.embed_tokens.weight, model.proj_out.weight
    with torch.no_grad():
        for target in {*successors.values(), *runners_up.values()}:
            project[target] = 0.0
        for source, direction in directions.items():
            embed[source] = direction * d_model ** 0.5  # unit-variance entries: layer norm leaves it as it is
            project[successors[source]] += strength * direction
        for source, target in runners_up.items():
            project[target] += strength / 2 * directions[source]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    if SKIP_VIETNAMESE:
        pytest.skip("CALLSTT_NO_VIETNAMESE=1: the Vietnamese extra was not installed")
    root = tmp_path_factory.mktemp("tiny-whisper")
    return {
        "speaking": write_tiny_checkpoint(root / "tiny-vi", speak=PHRASE),
        "speaking-no-heads": write_tiny_checkpoint(root / "tiny-vi-no-heads", speak=PHRASE, alignment_heads=False),
        "random": write_tiny_checkpoint(root / "tiny-random"),
    }


@pytest.fixture(scope="module")
def converted(checkpoints, tmp_path_factory) -> dict[str, Path]:
    """Converted with the script's command line, as a user would."""
    from callstt.models.asr.convert import main

    root = tmp_path_factory.mktemp("converted")
    outputs = {"speaking-int8": root / "tiny-vi-ct2-int8", "random-float32": root / "tiny-random-ct2-float32"}
    assert main([str(checkpoints["speaking"]), "--output", str(outputs["speaking-int8"])]) == 0  # int8: default
    assert main([str(checkpoints["random"]), "--output", str(outputs["random-float32"]), "-q", "float32"]) == 0
    return outputs


@pytest.fixture(scope="module")
def vietnamese_audio() -> np.ndarray:
    return synthesize(VIETNAMESE_SENTENCES[0], "vi")


def transformers_backend(directory: Path, **kwargs):
    from callstt.models.asr.transformers_backend import TransformersBackend

    return TransformersBackend(directory, directory.name, cpu_threads=2, **kwargs)


def assert_timings_inside(result, duration_s: float) -> None:
    for word in result.words:
        assert 0.0 <= word.start <= word.end <= duration_s + 1e-6, word
        assert 0.0 <= word.probability <= 1.0
    for segment in result.segments:
        assert 0.0 <= segment.start <= segment.end <= duration_s + 1e-6, segment


# --- (a) the transformers backend ---------------------------------------------------------------------

@needs_torch
def test_transformers_backend_returns_words_with_times_inside_the_audio(checkpoints, vietnamese_audio):
    backend = transformers_backend(checkpoints["speaking"])
    duration_s = len(vietnamese_audio) / SAMPLE_RATE
    result = backend.transcribe(vietnamese_audio, "vi")

    assert result.text == PHRASE.strip()
    assert [w.text for w in result.words] == ["xin", "chào"]
    assert result.language == "vi" and result.language_probability == 1.0
    assert result.model_name == "tiny-vi" and result.backend == "transformers"
    assert result.timestamps_note == ""  # alignment heads: word-level times
    assert len(result.segments) == 1 and result.segments[0].end == pytest.approx(duration_s, abs=1e-3)
    assert result.avg_logprob > -0.1 and 0.0 <= result.no_speech_prob <= 1.0
    assert all(w.probability > 0.9 for w in result.words)
    assert_timings_inside(result, duration_s)
    assert backend.details["word_timestamps"] == "alignment"
    assert backend.detect_language(vietnamese_audio)[0] in {t[2:-2] for t in backend.lang_to_id}


@needs_torch
def test_checkpoint_without_alignment_heads_gives_segment_level_times_and_says_so(checkpoints, vietnamese_audio):
    backend = transformers_backend(checkpoints["speaking-no-heads"])
    duration_s = len(vietnamese_audio) / SAMPLE_RATE
    result = backend.transcribe(vietnamese_audio, "vi")

    assert result.text == "xin chào" and "segment-level" in result.timestamps_note
    assert backend.details["word_timestamps"] == "segment-level"
    # Spread over the utterance by length: "xin" (3 letters) then "chào" (4), back to back.
    first, second = result.words
    assert first.start == 0.0 and first.end == pytest.approx(second.start, abs=1e-3)
    assert second.end == pytest.approx(duration_s, abs=1e-3)
    assert first.end == pytest.approx(duration_s * 3 / 7, abs=1e-3)


@needs_torch
def test_random_checkpoint_output_is_bounded(checkpoints):
    backend = transformers_backend(checkpoints["random"])
    audio = (np.random.default_rng(5).standard_normal(SAMPLE_RATE * 2) * 0.1).astype(np.float32)
    result = backend.transcribe(audio, "vi")

    assert len(result.words) <= max_new_tokens_for(2.0)
    assert result.backend == "transformers" and result.language == "vi"
    assert_timings_inside(result, 2.0)


# --- (b) conversion, then the faster-whisper backend ------------------------------------------------

@needs_torch
def test_converted_checkpoint_runs_in_the_faster_whisper_backend(checkpoints, converted, vietnamese_audio):
    directory = converted["speaking-int8"]
    assert is_ctranslate2_dir(directory)
    marker = json.loads((directory / "callstt-converted.json").read_text())
    assert marker["quantization"] == "int8" and marker["source"].endswith("tiny-vi")
    assert choose_checkpoint(str(directory)).kind == "ctranslate2"  # the store recognises it

    backend = FasterWhisperBackend(directory, "tiny-vi", compute_type="int8", cpu_threads=2)
    duration_s = len(vietnamese_audio) / SAMPLE_RATE
    result = backend.transcribe(vietnamese_audio, "vi")

    assert result.text == "xin chào"
    assert [w.text for w in result.words] == ["xin", "chào"]
    assert result.language == "vi" and result.backend == "faster-whisper"
    assert len(result.segments) == 1 and result.segments[0].start == 0.0  # timestamp mode: <|0.00|> phrase
    assert_timings_inside(result, duration_s)


@needs_torch
def test_auto_backend_prefers_a_converted_copy_in_the_cache(checkpoints, tmp_path):
    from callstt.models.asr.convert import convert_reference

    reference = str(checkpoints["speaking"])
    assert choose_checkpoint(reference, "auto", cache_dir=tmp_path).kind == "transformers"
    choice = choose_checkpoint(reference, "converted", cache_dir=tmp_path)
    assert choice.convert_from == checkpoints["speaking"] and choice.path == converted_dir_for(reference, "int8", tmp_path)

    assert convert_reference(reference, cache_dir=tmp_path) == choice.path
    assert choose_checkpoint(reference, "auto", cache_dir=tmp_path) == type(choice)(choice.path, "ctranslate2")
    assert choose_checkpoint(reference, "transformers", cache_dir=tmp_path).kind == "transformers"


# --- (c) the same greedy tokens ---------------------------------------------------------------------

def greedy_tokens(checkpoint: Path, converted_dir: Path, compute_type: str, audio: np.ndarray,
                  max_new_tokens: int = 30) -> tuple[list[int], list[int]]:
    """Greedy decoding forced to <|vi|> <|transcribe|> <|notimestamps|>, from the same log-mel features:
    transformers' generate on the checkpoint, CTranslate2's on its conversion. Returns the generated
    tokens of each without the prompt and the end token; CTranslate2's are cut to transformers' length
    when transformers stopped at max_new_tokens."""
    import ctranslate2
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    features = WhisperFeatureExtractor.from_pretrained(checkpoint)(
        audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features.astype(np.float32)
    model = WhisperForConditionalGeneration.from_pretrained(checkpoint).eval()
    prompt = [SOT, VI, TRANSCRIBE, NO_TIMESTAMPS]
    # CTranslate2 suppresses timestamp tokens under <|notimestamps|>; transformers' generate does not
    # (nor OpenAI's decoder): suppress them here too, as the transformers backend does.
    suppress = [*model.generation_config.suppress_tokens, *range(NO_TIMESTAMPS + 1, model.config.vocab_size)]
    with torch.inference_mode():
        reference = model.generate(torch.from_numpy(features), language="vi", task="transcribe",
                                   return_timestamps=False, max_new_tokens=max_new_tokens,
                                   suppress_tokens=suppress)[0].tolist()
    if reference[:len(prompt)] == prompt:
        reference = reference[len(prompt):]
    finished = EOT in reference
    reference = reference[:reference.index(EOT)] if finished else reference
    whisper = ctranslate2.models.Whisper(str(converted_dir), device="cpu", compute_type=compute_type, intra_threads=2)
    candidate = whisper.generate(ctranslate2.StorageView.from_array(features), [prompt], beam_size=1,
                                 max_length=448)[0].sequences_ids[0]
    return reference, candidate if finished else candidate[:len(reference)]


@needs_torch
def test_greedy_decoding_gives_the_same_tokens_in_transformers_and_ctranslate2(checkpoints, converted,
                                                                               vietnamese_audio):
    # Random weights (nothing planted): varied tokens, every layer matters; float32 conversion must agree exactly.
    reference, candidate = greedy_tokens(checkpoints["random"], converted["random-float32"], "float32",
                                         vietnamese_audio)
    assert len(reference) == 30 and len(set(reference)) > 5, "the random checkpoint should say varied things"
    assert candidate == reference
    # The default int8 conversion of the speaking checkpoint: the same phrase, then the end.
    reference, candidate = greedy_tokens(checkpoints["speaking"], converted["speaking-int8"], "int8",
                                         vietnamese_audio)
    assert reference == candidate == [2031, 259, 417, 20807]  # " x" "in" " ch" "ào"


# --- the converted route against the transformers route --------------------------------------------

@needs_torch
def test_converted_route_says_what_the_transformers_route_says(checkpoints, converted, vietnamese_audio):
    """Same weights, same utterance: the converted route and the transformers route give the same text.
    Their speed is not compared here (timings on shared CI machines are noise); `python -m callstt.models.asr.convert
    ... --benchmark` prints it, and this checks only that the benchmark runs both routes and reports them."""
    from callstt.models.asr.convert import benchmark

    checkpoint, converted_dir = checkpoints["speaking"], converted["speaking-int8"]
    assert FasterWhisperBackend(converted_dir, "tiny-vi", cpu_threads=2).transcribe(vietnamese_audio, "vi").text \
        == transformers_backend(checkpoint).transcribe(vietnamese_audio, "vi").text == "xin chào"

    result = benchmark(checkpoint, converted_dir, vietnamese_audio, runs=1, cpu_threads=2)
    assert set(result) == {"transformers", "converted", "speedup"} and all(value > 0 for value in result.values())


# --- (d) through the real pipeline ------------------------------------------------------------------

@pytest.fixture(scope="module")
def route_worker(kafka_bootstrap, tmp_path_factory, checkpoints):
    worker = WorkerProcess(kafka_bootstrap, tmp_path_factory.mktemp("vi-worker"), extra_env={
        "USE_PHOWHISPER": "true", "CALLSTT_PHOWHISPER_MODEL": str(checkpoints["speaking"]),
        "CALLSTT_PHOWHISPER_BACKEND": "transformers"}).start()
    yield worker
    worker.stop()


@needs_torch
def test_vietnamese_call_through_the_pipeline_names_the_route(route_worker):
    plan = ChunkPlan(sample_rate=8000, encoding="MULAW", chunk_ms=20)
    vietnamese, english = f"vi-{uuid.uuid4().hex[:6]}", f"en-{uuid.uuid4().hex[:6]}"
    vi_audio = conversation(VIETNAMESE_SENTENCES[:1], "vi", sample_rate=plan.sample_rate)
    en_audio = conversation(ENGLISH_SENTENCES[:1], "en", sample_rate=plan.sample_rate)
    with route_worker.publisher() as publisher:
        for chunk in iter_chunks(vi_audio, vietnamese, "caller", plan, start_ms=0, language="vi"):
            publisher.send(chunk)
        for chunk in iter_chunks(en_audio, english, "caller", plan, start_ms=0):
            publisher.send(chunk)

    calls = by_call(route_worker.transcripts(expected=2, idle_s=3, call_ids={vietnamese, english}))

    [vi] = calls[vietnamese]
    assert (vi.model_name, vi.backend, vi.language, vi.text) == ("tiny-vi", "transformers", "vi", "xin chào")
    assert vi.timestamps_note is None  # word-level times (the checkpoint has alignment heads)
    assert [w.text for w in vi.words] == ["xin", "chào"]
    for word in vi.words:
        assert vi.start_ms <= word.start_ms <= word.end_ms <= vi.end_ms
    [en] = calls[english]
    assert (en.model_name, en.backend, en.language) == ("base", "faster-whisper", "en")
    models = httpx.get(f"http://127.0.0.1:{route_worker.web_port}/models").json()
    assert models["routes"]["vi"]["backend"] == "transformers" and models["routes"]["vi"]["model"] == "tiny-vi"
    assert "vi" not in models["notes"]


def test_a_route_that_cannot_load_falls_back_to_the_multilingual_model(tmp_path):
    from callstt.streams.model_routes import build_router
    from callstt.streams.settings import Settings

    missing = tmp_path / "no-such-checkpoint"
    router = build_router(Settings(use_phowhisper=True, phowhisper_model=str(missing), cpu_threads=2))
    assert router.routes == {}
    assert "could not load" in router.notes["vi"] and str(missing) in router.notes["vi"]
    assert router.backend_for("vi") is router.multilingual
    # A hub id without hub access falls back too, with the reason (on /models as well).
    router = build_router(Settings(use_phowhisper=True, phowhisper_model="example/no-such-checkpoint", cpu_threads=2))
    assert "CALLSTT_ALLOW_HUB_DOWNLOAD" in router.notes["vi"]
    assert router.describe()["notes"]["vi"] == router.notes["vi"] and "vi" not in router.describe()["routes"]


@needs_torch
def test_build_router_runs_a_converted_model_and_converts_on_first_use(checkpoints, converted, tmp_path):
    from callstt.streams.model_routes import build_router
    from callstt.streams.settings import Settings

    # A CTranslate2 directory as the reference: faster-whisper runs it (auto).
    router = build_router(Settings(use_phowhisper=True, phowhisper_model=str(converted["speaking-int8"]),
                                   cpu_threads=2))
    route = router.routes["vi"]
    assert (route.backend_name, route.model_name) == ("faster-whisper", "tiny-vi-ct2-int8") and not router.notes
    assert router.describe()["routes"]["vi"]["model"] == "tiny-vi-ct2-int8"
    # backend=converted with a transformers checkpoint: converted once into the model cache, then reused.
    # (tiny.en as the multilingual model: a packaged model that needs nothing written into this cache.)
    settings = Settings(use_phowhisper=True, phowhisper_model=str(checkpoints["speaking"]), model="tiny.en",
                        phowhisper_backend="converted", model_cache_dir=str(tmp_path), cpu_threads=2)
    route = build_router(settings).routes["vi"]
    copy = converted_dir_for(str(checkpoints["speaking"]), "int8", tmp_path)
    assert (route.backend_name, route.model_name, route.model_dir) == ("faster-whisper", "tiny-vi", copy)
    assert route.transcribe(synthesize(VIETNAMESE_SENTENCES[1], "vi"), "vi").text == "xin chào"
    auto = build_router(replace(settings, phowhisper_backend="auto")).routes["vi"]
    assert auto.backend_name == "faster-whisper" and auto.model_dir == copy
