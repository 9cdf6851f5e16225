"""What models/asr/faster_whisper_compat.py uses of faster-whisper below its public API still exists.

An upgrade that renames one must fail here, by name, not as batched transcription that breaks
at the first call in a worker."""

from __future__ import annotations

import dataclasses
import inspect

from faster_whisper import BatchedInferencePipeline
from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens


def test_the_batched_pipeline_step_takes_features_tokenizer_metadata_and_options():
    assert list(inspect.signature(BatchedInferencePipeline.forward).parameters) == [
        "self", "features", "tokenizer", "chunks_metadata", "options"]


def test_transcription_options_have_exactly_the_fields_the_compat_module_passes():
    source = inspect.getsource(__import__("callstt.models.asr.faster_whisper_compat", fromlist=["x"]).forward_windows)
    passed = {name for name in (f.name for f in dataclasses.fields(TranscriptionOptions)) if f"{name}=" in source}
    assert passed == {f.name for f in dataclasses.fields(TranscriptionOptions)}


def test_suppressed_tokens_helper_takes_a_tokenizer_and_a_list():
    assert list(inspect.signature(get_suppressed_tokens).parameters)[:2] == ["tokenizer", "suppress_tokens"]
