"""The Avro codec in embedded mode (ids from schemas/registry.json): no broker, no registry."""

from __future__ import annotations

import io
import json
import random
import struct
from dataclasses import replace

import fastavro
import pytest

from callstt.schemas.codec import (EMBEDDED_REGISTRY, AvroCodec, DecodeError, EncodeError, frame, load_schema_file,
                                   peek_schema_id)
from callstt.schemas.records import (AudioChunk, CallSettings, Encoding, StreamSettings, Transcript, TranscriptSentence,
                                     TranscriptWord, transcript_id)

REGISTRY = json.loads(EMBEDDED_REGISTRY.read_text())
ID_BY_FILE = {file: int(schema_id) for schema_id, file in REGISTRY["schemas"].items()}
V2_ONLY_FIELDS = {"sentences", "model_version", "timestamps_note"}
V3_ONLY_FIELDS = {"redactions"}
V4_ONLY_FIELDS = {"revision", "stable_word_count", "stable_text"}
LATER_THAN_V1 = V2_ONLY_FIELDS | V3_ONLY_FIELDS | V4_ONLY_FIELDS


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec()


def make_chunk(**overrides) -> AudioChunk:
    fields = dict(call_id="call-1", stream_id="call-1/agent", seq=42, capture_ts_ms=1_760_000_000_123,
                  sample_rate=16_000, encoding=Encoding.PCM_S16LE, payload=bytes(range(256)) * 2,
                  language="en")
    fields.update(overrides)
    return AudioChunk(**fields)


def make_transcript(**overrides) -> Transcript:
    # Floats are exact in 32 bits, so decoded records compare equal.
    fields = dict(
        transcript_id=transcript_id("call-1", "call-1/agent", 3), call_id="call-1", stream_id="call-1/agent",
        utterance_index=3, text="Hello there. How can I help?", language="en", language_probability=0.875,
        start_ms=1_000, end_ms=3_500,
        words=[TranscriptWord(text=w, start_ms=1_000 + 400 * i, end_ms=1_350 + 400 * i, probability=0.5)
               for i, w in enumerate(["Hello", "there.", "How", "can", "I", "help?"])],
        sentences=[TranscriptSentence(text="Hello there.", start_ms=1_000, end_ms=1_750),
                   TranscriptSentence(text="How can I help?", start_ms=1_800, end_ms=3_500)],
        model_name="whisper-base", model_version="1.0.0", backend="faster-whisper/cpu-int8",
        avg_logprob=-0.25, no_speech_prob=0.0625, last_audio_capture_ts_ms=1_760_000_003_500,
        last_audio_received_ts_ms=1_760_000_003_510, produced_ts_ms=1_760_000_004_000,
        timestamps_note="word times are segment-level")
    fields.update(overrides)
    return Transcript(**fields)


def v1_frame(record: dict) -> bytes:
    """A Transcript written by a version-1 producer: v1 schema, v1's id."""
    schema = fastavro.parse_schema(load_schema_file("history/transcript_v1.avsc"))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, {k: v for k, v in record.items() if k not in LATER_THAN_V1})
    return frame(ID_BY_FILE["history/transcript_v1.avsc"], body.getvalue())


# -- round trips and framing ------------------------------------------------------------


def test_chunk_round_trip_and_frame(codec):
    chunk = make_chunk()
    data = codec.encode_chunk(chunk, "audio-chunks")
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    assert schema_id == ID_BY_FILE["audio_chunk.avsc"] == peek_schema_id(data)
    assert codec.decode_chunk(data, "audio-chunks") == chunk


@pytest.mark.parametrize("encoding", list(Encoding))
def test_chunk_defaults_and_every_encoding(codec, encoding):
    chunk = AudioChunk(call_id="c", stream_id="s", seq=0, capture_ts_ms=0, sample_rate=8_000,
                       encoding=encoding, payload=b"")
    decoded = codec.decode_chunk(codec.encode_chunk(chunk, "audio"))
    assert decoded == chunk
    assert (decoded.channels, decoded.language, decoded.end_of_stream) == (1, None, False)
    assert isinstance(decoded.encoding, Encoding)


def test_chunk_end_of_stream_round_trip(codec):
    chunk = make_chunk(payload=b"", end_of_stream=True, language=None, encoding="MULAW", channels=2)
    assert chunk.encoding is Encoding.MULAW
    assert codec.decode_chunk(codec.encode_chunk(chunk, "audio")) == chunk


def test_transcript_round_trip_and_frame(codec):
    transcript = make_transcript()
    data = codec.encode_transcript(transcript, "transcripts")
    assert data[0] == 0
    assert peek_schema_id(data) == ID_BY_FILE["transcript.avsc"]
    decoded = codec.decode_transcript(data, "transcripts")
    assert decoded == transcript
    assert decoded.to_dict() == transcript.to_dict()


def test_float_precision_is_32_bit(codec):
    decoded = codec.decode_transcript(codec.encode_transcript(make_transcript(language_probability=0.9), "t"))
    assert decoded.language_probability == pytest.approx(0.9, abs=1e-6)


def test_generic_api_uses_avsc_field_names(codec):
    record = make_chunk().to_dict()
    schema_fields = [f["name"] for f in load_schema_file("audio_chunk.avsc")["fields"]]
    assert list(record) == schema_fields
    assert list(make_transcript().to_dict()) == [f["name"] for f in load_schema_file("transcript.avsc")["fields"]]
    assert codec.decode("callstt.AudioChunk", codec.encode("AudioChunk", record, "audio")) == record


def test_record_dataclasses_mirror_schemas():
    for record, file in ((AudioChunk, "audio_chunk.avsc"), (Transcript, "transcript.avsc")):
        assert [f for f in record.__dataclass_fields__] == [f["name"] for f in load_schema_file(file)["fields"]]


# -- schema evolution -------------------------------------------------------------------


def test_every_field_has_doc_and_later_fields_have_defaults():
    for file in ("audio_chunk.avsc", "transcript.avsc", "call_settings.avsc", "translation.avsc", "history/call_settings_v1.avsc",
                 "history/call_settings_v2.avsc", "history/translation_v1.avsc", "history/transcript_v1.avsc",
                 "history/transcript_v2.avsc", "history/transcript_v3.avsc"):
        for field in load_schema_file(file)["fields"]:
            assert field.get("doc"), f"{file}: {field['name']} has no doc"
    v1 = {f["name"] for f in load_schema_file("history/transcript_v1.avsc")["fields"]}
    v2 = {f["name"] for f in load_schema_file("history/transcript_v2.avsc")["fields"]}
    added = [f for f in load_schema_file("transcript.avsc")["fields"] if f["name"] not in v1]
    assert {f["name"] for f in added} == LATER_THAN_V1
    assert v2 - v1 == V2_ONLY_FIELDS
    v3 = {f["name"] for f in load_schema_file("history/transcript_v3.avsc")["fields"]}
    assert v3 - v2 == V3_ONLY_FIELDS
    assert all("default" in f for f in added)


def test_v1_record_decodes_with_current_schema(codec):
    old = v1_frame(make_transcript().to_dict())
    assert peek_schema_id(old) == ID_BY_FILE["history/transcript_v1.avsc"]
    decoded = codec.decode_transcript(old, "transcripts")
    assert decoded == make_transcript(sentences=(), model_version="", timestamps_note=None)


def test_current_record_decodes_with_v1_reader():
    old_reader = AvroCodec(reader_schemas={"Transcript": "history/transcript_v1.avsc"})
    data = AvroCodec().encode_transcript(make_transcript(), "transcripts")
    decoded = old_reader.decode("Transcript", data, "transcripts")
    expected = {k: v for k, v in make_transcript().to_dict().items() if k not in LATER_THAN_V1}
    assert decoded == expected
    # The typed record fills what v1 lacks with the defaults.
    assert Transcript.from_dict(decoded).model_version == ""


def test_registry_json_ids_are_stable():
    assert REGISTRY["schemas"]["1"] == "audio_chunk.avsc"
    assert REGISTRY["schemas"]["2"] == "history/transcript_v2.avsc"  # was transcript.avsc: moved, same schema
    assert REGISTRY["schemas"]["3"] == "history/transcript_v1.avsc"
    assert REGISTRY["schemas"]["4"] == "history/call_settings_v1.avsc"  # was call_settings.avsc: moved, same schema
    assert REGISTRY["schemas"]["5"] == "history/transcript_v3.avsc"  # was transcript.avsc: moved, same schema
    assert REGISTRY["schemas"]["6"] == "transcript.avsc"
    assert REGISTRY["schemas"]["7"] == "history/translation_v1.avsc"  # was translation.avsc: moved, same schema
    assert REGISTRY["schemas"]["8"] == "history/call_settings_v2.avsc"  # was call_settings.avsc: moved, same schema
    assert REGISTRY["schemas"]["9"] == "translation.avsc"
    assert REGISTRY["schemas"]["10"] == "call_settings.avsc"
    assert REGISTRY["current"] == {"callstt.AudioChunk": 1, "callstt.Transcript": 6, "callstt.CallSettings": 10,
                                   "callstt.Translation": 9}


def test_a_v2_transcript_decodes_with_the_current_schema_and_the_current_with_a_v2_reader(codec):
    """Records already on the topic (version 2, id 2) keep decoding; readers still on version 2 read ours."""
    schema = fastavro.parse_schema(load_schema_file("history/transcript_v2.avsc"))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, {k: v for k, v in make_transcript().to_dict().items()
                                              if k not in V3_ONLY_FIELDS | V4_ONLY_FIELDS})
    decoded = codec.decode_transcript(frame(2, body.getvalue()), "transcripts")
    assert decoded == make_transcript() and decoded.redactions == {}
    v2_reader = AvroCodec(reader_schemas={"Transcript": "history/transcript_v2.avsc"})
    redacted = make_transcript(redactions={"card": 1})
    assert "redactions" not in v2_reader.decode("Transcript", codec.encode_transcript(redacted, "t"), "t")


def test_a_v3_transcript_decodes_as_a_final_and_a_v3_reader_reads_an_interim(codec):
    """Finals already on the topic (version 3, id 5) decode as finals with no interim fields; a
    consumer still on version 3 reads an interim (it sees is_final false and the text)."""
    schema = fastavro.parse_schema(load_schema_file("history/transcript_v3.avsc"))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, schema, {k: v for k, v in make_transcript(redactions={"card": 1}).to_dict().items()
                                              if k not in V4_ONLY_FIELDS})
    decoded = codec.decode_transcript(frame(5, body.getvalue()), "transcripts")
    assert decoded == make_transcript(redactions={"card": 1})
    assert (decoded.is_final, decoded.revision, decoded.stable_word_count, decoded.stable_text) == (True, 0, 0, "")
    interim = make_transcript(is_final=False, revision=3, stable_word_count=2, stable_text="Hello there.")
    assert codec.decode_transcript(codec.encode_transcript(interim, "partial")) == interim
    v3_reader = AvroCodec(reader_schemas={"Transcript": "history/transcript_v3.avsc"})
    old_view = v3_reader.decode("Transcript", codec.encode_transcript(interim, "partial"), "partial")
    assert old_view["is_final"] is False and old_view["text"] == interim.text and "revision" not in old_view


def test_a_rolling_upgrade_writes_the_pinned_earlier_version_that_the_previous_code_reads(codec):
    """CALLSTT_WRITE_SCHEMA_VERSIONS=Transcript=3: the frame carries version 3's id (5), which a
    reader of the previous version knows; the version-4 fields are left out and read as their
    defaults by the current version. A version that was never committed is refused."""
    pinned = AvroCodec(write_versions={"Transcript": 3})
    final = make_transcript(redactions={"card": 1})
    value = pinned.encode_transcript(final, "transcripts")
    assert peek_schema_id(value) == 5 and peek_schema_id(codec.encode_transcript(final, "transcripts")) == 6
    assert codec.decode_transcript(value) == final  # a final loses nothing: its v4 fields are defaults
    interim = make_transcript(is_final=False, revision=3, stable_word_count=2, stable_text="Hello there.")
    assert codec.decode_transcript(pinned.encode_transcript(interim, "partial")) == \
        make_transcript(is_final=False)  # what version 3 cannot say is gone
    assert pinned.encode_chunk(make_chunk(), "audio") == codec.encode_chunk(make_chunk(), "audio")
    with pytest.raises(ValueError, match="no earlier version 4"):
        AvroCodec(write_versions={"Transcript": 4})


def test_translation_round_trip_and_its_id_is_deterministic(codec):
    from callstt.schemas.records import Translation, TranslationStatus, translation_id

    made = Translation(
        translation_id=translation_id("t-1", "pt"), transcript_id="t-1", call_id="c1", stream_id="caller",
        utterance_index=2, source_language="en", target_language="pt", status=TranslationStatus.OK,
        text="Obrigado. Até logo.", sentences=[("Thank you.", "Obrigado."), ("Goodbye.", "Até logo.")],
        backend="bergamot", model="en-pt", translation_ms=41, transcript_produced_ts_ms=1_760_000_000_000,
        produced_ts_ms=1_760_000_000_050)
    assert codec.decode_translation(codec.encode_translation(made, "callstt.translations")) == made
    assert translation_id("t-1", "pt") == made.translation_id != translation_id("t-1", "en")
    unsupported = replace(made, status="UNSUPPORTED_PAIR", text="", sentences=())
    assert codec.decode_translation(codec.encode_translation(unsupported, "t")).status is TranslationStatus.UNSUPPORTED_PAIR


def test_call_settings_v1_records_read_with_no_targets_and_targets_resolve_per_stream(codec):
    schema = fastavro.parse_schema(load_schema_file("history/call_settings_v1.avsc"))
    body = io.BytesIO()
    old = {k: v for k, v in CallSettings(call_id="c1", languages=("en",)).to_dict().items()
           if k not in ("translate_to", "translate_interims", "voice")}
    old["streams"] = [{k: v for k, v in s.items() if k not in ("translate_to", "voice")} for s in old["streams"]]
    fastavro.schemaless_writer(body, schema, old)
    decoded = codec.decode_call_settings(frame(4, body.getvalue()))
    assert decoded == CallSettings(call_id="c1", languages=("en",)) and decoded.targets("caller") is None
    settings = CallSettings(call_id="c1", translate_to=("pt",), streams=(StreamSettings(stream_id="agent", translate_to=("vi", "en")),))
    assert codec.decode_call_settings(codec.encode_call_settings(settings, "s")) == settings
    assert settings.targets("caller") == ("pt",) and settings.targets("agent") == ("vi", "en")


def test_v1_translations_decode_as_finals_and_a_v1_reader_reads_an_interim_translation(codec):
    """Translations already on the topic (version 1, id 7) decode as finals; a consumer still on
    version 1 (a speaker not upgraded yet) reads the current records."""
    from callstt.schemas.records import Translation, TranslationStatus

    made = Translation(translation_id="id", transcript_id="t-1", call_id="c1", stream_id="caller", utterance_index=0,
                       source_language="en", target_language="pt", status=TranslationStatus.OK, text="Olá.",
                       backend="bergamot", transcript_produced_ts_ms=1, produced_ts_ms=2)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(load_schema_file("history/translation_v1.avsc")),
                               {k: v for k, v in made.to_dict().items() if k not in ("is_final", "revision")})
    decoded = codec.decode_translation(frame(7, body.getvalue()))
    assert decoded == made and (decoded.is_final, decoded.revision) == (True, 0)
    v1_reader = AvroCodec(reader_schemas={"Translation": "history/translation_v1.avsc"})
    interim = replace(made, is_final=False, revision=3)
    old_view = v1_reader.decode("Translation", codec.encode_translation(interim, "t"), "t")
    assert old_view["text"] == "Olá." and "is_final" not in old_view


def test_v2_call_settings_read_with_the_agents_defaults_for_interim_translation_and_voice(codec):
    schema = fastavro.parse_schema(load_schema_file("history/call_settings_v2.avsc"))
    body = io.BytesIO()
    settings = CallSettings(call_id="c1", translate_to=("pt",), streams=(StreamSettings(stream_id="agent"),))
    old = {k: v for k, v in settings.to_dict().items() if k not in ("translate_interims", "voice")}
    old["streams"] = [{k: v for k, v in s.items() if k != "voice"} for s in old["streams"]]
    fastavro.schemaless_writer(body, schema, old)
    decoded = codec.decode_call_settings(frame(8, body.getvalue()))
    assert decoded == settings and decoded.translate_interims is None and decoded.voice_for("agent") is None
    asked = replace(settings, translate_interims=True, voice="espeak-ng",
                    streams=(StreamSettings(stream_id="agent", voice="joe"),))
    assert codec.decode_call_settings(codec.encode_call_settings(asked, "s")) == asked
    assert (asked.voice_for("agent"), asked.voice_for("caller")) == ("joe", "espeak-ng")


def test_call_settings_round_trip_keeps_null_apart_from_empty(codec):
    settings = CallSettings(call_id="c1", languages=("vi", "en"), hotwords=("Zyntra",), redact=(),
                            streams=(StreamSettings(stream_id="agent", languages=("en",)),))
    decoded = codec.decode_call_settings(codec.encode_call_settings(settings, "callstt.call-settings"))
    assert decoded == settings
    assert decoded.initial_prompt is None and decoded.redact == ()  # default vs off
    assert decoded.stream("agent").hotwords is None and decoded.stream("caller") is None


# -- bad bytes --------------------------------------------------------------------------


def reason_of(codec: AvroCodec, data: bytes, record: str = "AudioChunk") -> str:
    with pytest.raises(DecodeError) as caught:
        codec.decode(record, data, "audio")
    assert isinstance(caught.value, ValueError)
    return caught.value.reason


def test_wrong_magic_byte(codec):
    data = bytearray(codec.encode_chunk(make_chunk(), "audio"))
    data[0] = 1
    assert reason_of(codec, bytes(data)) == "bad_magic_byte"
    assert reason_of(codec, b"{\"json\": true}") == "bad_magic_byte"


def test_unknown_schema_id(codec):
    body = codec.encode_chunk(make_chunk(), "audio")[5:]
    error_reason = reason_of(codec, frame(987_654, body))
    assert error_reason == "unknown_schema_id"
    with pytest.raises(DecodeError) as caught:
        codec.decode_chunk(frame(987_654, body))
    assert caught.value.schema_id == 987_654


def test_truncated_body(codec):
    data = codec.encode_chunk(make_chunk(), "audio")
    for cut in (6, 20, len(data) - 1):
        assert reason_of(codec, data[:cut]) == "truncated_avro"
    assert reason_of(codec, data[:3]) == "short_frame"
    assert reason_of(codec, b"") == "empty"


def test_trailing_bytes(codec):
    assert reason_of(codec, codec.encode_chunk(make_chunk(), "audio") + b"\x00") == "trailing_bytes"


def test_record_of_another_type(codec):
    transcript_frame = codec.encode_transcript(make_transcript(), "transcripts")
    assert reason_of(codec, transcript_frame, "AudioChunk") == "schema_mismatch"


def test_bad_enum_index(codec):
    chunk = make_chunk(call_id="c", stream_id="s", seq=0, capture_ts_ms=0, sample_rate=1)
    data = bytearray(codec.encode_chunk(chunk, "audio"))
    # After the header: "c" (2 bytes), "s" (2), seq (1), capture_ts_ms (1), sample_rate (1), then the enum.
    data[5 + 7] = 0x7E  # index 63: no such symbol
    assert reason_of(codec, bytes(data)) == "bad_avro"


def test_random_bytes_raise_only_decode_error(codec):
    rng = random.Random(20_240_601)
    good = [codec.encode_chunk(make_chunk(), "audio"), codec.encode_transcript(make_transcript(), "t")]
    reasons = set()
    for i in range(3_000):
        if i % 3 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        else:
            data = bytearray(good[i % 2])
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data[:rng.randrange(1, len(data) + 1)])
        for record in ("AudioChunk", "Transcript"):
            try:
                codec.decode(record, data, "audio")
            except DecodeError as error:
                reasons.add(error.reason)
    assert {"bad_magic_byte", "truncated_avro"} <= reasons
    assert reasons <= {"empty", "short_frame", "bad_magic_byte", "unknown_schema_id", "schema_mismatch",
                       "truncated_avro", "bad_avro", "trailing_bytes"}


# -- encode validation ------------------------------------------------------------------


@pytest.mark.parametrize("change", [
    {"seq": "42"}, {"seq": 1.5}, {"call_id": 7}, {"payload": "not bytes"}, {"encoding": "OPUS"},
    {"language": 3}, {"end_of_stream": 2}, {"sample_rate": 2 ** 40}, {"seq": 2 ** 70}, {"unexpected": 1},
])
def test_encode_rejects_records_that_do_not_fit(codec, change):
    with pytest.raises(EncodeError) as caught:
        codec.encode("AudioChunk", {**make_chunk().to_dict(), **change}, "audio")
    assert isinstance(caught.value, ValueError)


def test_encode_fills_missing_defaults_and_rejects_missing_required(codec):
    record = make_chunk().to_dict()
    del record["channels"], record["end_of_stream"]
    assert codec.decode_chunk(codec.encode("AudioChunk", record, "audio")).channels == 1
    del record["payload"]
    with pytest.raises(EncodeError):
        codec.encode("AudioChunk", record, "audio")


# -- transcript ids ---------------------------------------------------------------------


def test_transcript_id_is_deterministic_and_distinct():
    first = transcript_id("call-1", "agent", 0)
    assert first == transcript_id("call-1", "agent", 0)
    ids = {transcript_id("call-1", "agent", i) for i in range(100)}
    ids |= {transcript_id("call-1", "customer", i) for i in range(100)}
    ids |= {transcript_id("call-2", "agent", i) for i in range(100)}
    assert len(ids) == 300
    # A separator inside an id cannot make two triples collide.
    assert transcript_id("a/b", "c", 1) != transcript_id("a", "b/c", 1)
