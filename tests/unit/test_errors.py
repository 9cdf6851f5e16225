"""One root for the project's exceptions (schemas.errors.CallsttError), with the old bases and reasons kept."""

from __future__ import annotations

import ast
import importlib
import inspect
import pickle

import pytest

from callstt.models.audio.errors import BadChunk
from callstt.schemas.codec import DecodeError
from callstt.schemas.errors import CallsttError

# (module, class, the built-in base it had before CallsttError): `except ValueError` etc. must still catch it.
PROJECT_ERRORS = [
    ("callstt.models.audio.errors", "BadChunk", ValueError),
    ("callstt.models.voices.synth", "SynthesisError", RuntimeError),
    ("callstt.models.asr.store", "ModelFileError", RuntimeError),
    ("callstt.models.translation.ct2", "TranslationModelError", ValueError),
    ("callstt.models.voices.backends", "VoiceError", ValueError),
    ("callstt.schemas.codec", "DecodeError", ValueError),
    ("callstt.schemas.codec", "EncodeError", ValueError),
    ("callstt.schemas.codec", "SchemaRegistryUnavailable", RuntimeError),
    ("callstt.streams.settings", "SettingsError", ValueError),
    ("callstt.streams.client.publishing", "InputError", ValueError),
    ("callstt.streams.core.redaction", "RedactionConfigError", ValueError),
    ("callstt.streams.client.publishing", "PublishError", RuntimeError),
    ("callstt.streams.cli", "CliFailure", Exception),
    ("callstt.streams.client.tailing", "TailError", RuntimeError),
    ("callstt.streams.worker.http_transcribe", "UnreadableAudio", ValueError),
    ("callstt.infra.local.kafka", "BrokerError", RuntimeError),
    ("callstt.infra.local.registry", "RegistryError", RuntimeError),
]


@pytest.mark.parametrize("module, name, old_base", PROJECT_ERRORS, ids=[name for _, name, _ in PROJECT_ERRORS])
def test_every_project_error_is_a_callstt_error_and_keeps_its_old_base(module, name, old_base):
    error = getattr(importlib.import_module(module), name)
    assert issubclass(error, CallsttError) and issubclass(error, old_base)


def test_the_root_depends_on_nothing():
    import callstt.schemas.errors

    tree = ast.parse(inspect.getsource(callstt.schemas.errors))
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert [node.module for node in imports if isinstance(node, ast.ImportFrom)] == ["__future__"]
    assert CallsttError.__bases__ == (Exception,)


def test_bad_chunk_reasons_are_unchanged_and_survive_pickling():
    assert BadChunk.REASONS == {
        "unknown_encoding", "bad_sample_rate", "bad_channels", "partial_sample",
        "oversized_chunk", "empty_payload", "negative_seq", "seq_jump",
    }
    error = pickle.loads(pickle.dumps(BadChunk("seq_jump", "from 3 to 9")))
    assert (type(error), error.reason, error.message, str(error)) == (BadChunk, "seq_jump", "from 3 to 9",
                                                                      "seq_jump: from 3 to 9")


def test_decode_error_reasons_are_unchanged_and_are_the_ones_raised():
    import callstt.schemas.codec

    assert DecodeError.REASONS == {
        "empty", "short_frame", "bad_magic_byte", "unknown_schema_id", "schema_mismatch",
        "truncated_avro", "bad_avro", "trailing_bytes",
    }
    # The codec raises each of them: all but bad_avro literally (bad_avro is chosen at run time, in
    # `reason = "truncated_avro" if ... else "bad_avro"`), and no other.
    tree = ast.parse(inspect.getsource(callstt.schemas.codec))
    raised = {node.args[0].value for node in ast.walk(tree) if isinstance(node, ast.Call)
              and getattr(node.func, "id", None) == "DecodeError" and isinstance(node.args[0], ast.Constant)}
    assert raised | {"bad_avro"} == DecodeError.REASONS
    error = DecodeError("short_frame", "3 bytes", 7)
    assert (error.reason, error.detail, error.schema_id, str(error)) == ("short_frame", "3 bytes", 7,
                                                                         "short_frame: 3 bytes")


def test_every_reason_a_record_is_rejected_for_is_listed_for_the_dead_letter_counter():
    """The worker exports the dead-letter counter of each listed reason at 0 from the start, so
    an unlisted one's first burst would not count as an increase (nor fire the alert)."""
    from pathlib import Path

    from callstt.streams.core.pipeline import Rejected

    root = Path(__file__).resolve().parents[2]
    raised = set()
    for path in [*(root / "models").rglob("*.py"), *(root / "streams").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("BadChunk", "Rejected") \
                    and node.args and isinstance(node.args[0], ast.Constant):
                raised.add(node.args[0].value)
    assert {"after_end_of_stream", "seq_jump", "missing_key", "processing_error"} <= raised
    assert raised <= Rejected.REASONS
    assert DecodeError.REASONS | BadChunk.REASONS <= Rejected.REASONS
