"""The PhoWhisper route's settings and checkpoint choice (models.asr.store.choose_checkpoint), on fake
directories: which directory and backend a reference leads to, without loading anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callstt.models.asr.store import (ModelFileError, check_model_dir, choose_checkpoint, converted_dir_for,
                                      find_converted, is_ctranslate2_dir, is_transformers_checkpoint)
from callstt.models.asr.transformers_backend import SEGMENT_LEVEL_NOTE, resolve_dtype, spread_over
from callstt.streams.settings import Settings


def fake_ctranslate2(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "model.bin").write_bytes(b"\0" * 16)
    (path / "config.json").write_text(json.dumps({"lang_ids": []}))
    (path / "vocabulary.json").write_text("[]")
    return path


def fake_checkpoint(path: Path, weights: str = "model.safetensors") -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "whisper", "d_model": 64}))
    (path / weights).write_bytes(b"\0" * 16)
    return path


def test_settings_of_the_route():
    settings = Settings.from_env({})
    assert (settings.phowhisper_backend, settings.phowhisper_quantization, settings.torch_dtype) == (
        "auto", "int8", "auto")
    settings = Settings.from_env({"USE_PHOWHISPER": "1", "CALLSTT_PHOWHISPER_MODEL": "vinai/PhoWhisper-small",
                                  "CALLSTT_PHOWHISPER_BACKEND": "converted",
                                  "CALLSTT_PHOWHISPER_QUANTIZATION": "float32", "CALLSTT_TORCH_DTYPE": "bfloat16"})
    assert (settings.use_phowhisper, settings.phowhisper_model, settings.phowhisper_backend,
            settings.phowhisper_quantization, settings.torch_dtype) == (
        True, "vinai/PhoWhisper-small", "converted", "float32", "bfloat16")


def test_directory_kinds(tmp_path):
    ct2 = fake_ctranslate2(tmp_path / "ct2")
    checkpoint = fake_checkpoint(tmp_path / "hf", weights="pytorch_model.bin")
    assert is_ctranslate2_dir(ct2) and not is_transformers_checkpoint(ct2)
    assert is_transformers_checkpoint(checkpoint) and not is_ctranslate2_dir(checkpoint)
    not_whisper = tmp_path / "bert"
    not_whisper.mkdir()
    (not_whisper / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (not_whisper / "model.safetensors").write_bytes(b"\0")
    assert not is_transformers_checkpoint(not_whisper)
    # The faster-whisper model store points a transformers checkpoint to the converter.
    with pytest.raises(ModelFileError, match="transformers checkpoint.*models.asr.convert"):
        check_model_dir(checkpoint)


def test_a_ctranslate2_directory_runs_as_it_is(tmp_path):
    ct2 = fake_ctranslate2(tmp_path / "phowhisper-ct2")
    for backend in ("auto", "converted"):
        assert choose_checkpoint(str(ct2), backend, cache_dir=tmp_path / "cache") == type(
            choose_checkpoint(str(ct2)))(ct2, "ctranslate2")
    with pytest.raises(ModelFileError, match="CTranslate2 model, which the transformers backend cannot run"):
        choose_checkpoint(str(ct2), "transformers", cache_dir=tmp_path / "cache")


def test_a_checkpoint_prefers_its_converted_copy(tmp_path):
    cache = tmp_path / "cache"
    checkpoint = fake_checkpoint(tmp_path / "PhoWhisper-tiny")
    reference = str(checkpoint)
    auto = choose_checkpoint(reference, "auto", cache_dir=cache)
    assert (auto.path, auto.kind, auto.convert_from) == (checkpoint, "transformers", None)
    converted = choose_checkpoint(reference, "converted", "int8", cache_dir=cache)
    assert converted.kind == "ctranslate2" and converted.convert_from == checkpoint
    assert converted.path == converted_dir_for(reference, "int8", cache)
    assert converted.path.parent == cache / "converted" and converted.path.name.startswith("PhoWhisper-tiny-")

    fake_ctranslate2(converted_dir_for(reference, "float32", cache))  # an earlier conversion, other quantization
    assert find_converted(reference, "int8", cache) == converted_dir_for(reference, "float32", cache)
    for backend in ("auto", "converted"):
        choice = choose_checkpoint(reference, backend, "int8", cache_dir=cache)
        assert (choice.path, choice.kind, choice.convert_from) == (
            converted_dir_for(reference, "float32", cache), "ctranslate2", None)
    assert choose_checkpoint(reference, "transformers", cache_dir=cache).kind == "transformers"


def test_a_hub_id_uses_a_converted_copy_without_the_hub(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ModelFileError, match="CALLSTT_ALLOW_HUB_DOWNLOAD"):
        choose_checkpoint("vinai/PhoWhisper-small", "auto", cache_dir=cache)
    copy = fake_ctranslate2(cache / "converted" / "vinai--PhoWhisper-small-int8")
    assert converted_dir_for("vinai/PhoWhisper-small", "int8", cache) == copy
    assert choose_checkpoint("vinai/PhoWhisper-small", "auto", cache_dir=cache).path == copy
    with pytest.raises(ModelFileError, match="CALLSTT_ALLOW_HUB_DOWNLOAD"):
        choose_checkpoint("vinai/PhoWhisper-small", "transformers", cache_dir=cache)


@pytest.mark.parametrize("reference, backend, quantization, message", [
    ("vinai/PhoWhisper-small", "onnx", "int8", "unknown checkpoint backend"),
    ("vinai/PhoWhisper-small", "auto", "int4", "unknown quantization"),
    ("phowhisper", "auto", "int8", "unknown checkpoint reference"),
    ("./no/such/dir", "auto", "int8", "does not exist"),
])
def test_bad_references_say_what_to_do(tmp_path, reference, backend, quantization, message):
    with pytest.raises(ModelFileError, match=message):
        choose_checkpoint(reference, backend, quantization, cache_dir=tmp_path)


def test_segment_level_word_times_are_spread_by_length():
    spans = spread_over(2.0, [3, 1, 4])
    assert spans[0] == (0.0, 0.75) and spans[-1][1] == pytest.approx(2.0)
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(spans, spans[1:]))
    assert "segment-level" in SEGMENT_LEVEL_NOTE


def test_torch_dtype_choice():
    assert resolve_dtype("auto", "cpu") == "float32" and resolve_dtype("auto", "cuda") == "float16"
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(ModelFileError, match="unknown torch dtype"):
        resolve_dtype("int8", "cpu")
