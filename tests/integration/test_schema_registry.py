"""The codec's registry mode against a real Apicurio Registry (its Confluent-compatible API)."""

from __future__ import annotations

import io
import struct
import uuid

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from callstt.schemas.codec import (AvroCodec, DecodeError, SchemaRegistryUnavailable, frame, load_schema_file,
                                   peek_schema_id, schema_text, subject_for)
from callstt.schemas.records import AudioChunk, Encoding, Transcript, TranscriptWord, transcript_id

pytestmark = pytest.mark.integration

@pytest.fixture()
def client(schema_registry_url) -> SchemaRegistryClient:
    with SchemaRegistryClient({"url": schema_registry_url}) as client:
        yield client


def new_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_chunk(seq: int = 0) -> AudioChunk:
    return AudioChunk(call_id="call-7", stream_id="call-7/customer", seq=seq, capture_ts_ms=1_760_000_000_000 + 20 * seq,
                      sample_rate=8_000, encoding=Encoding.MULAW, payload=bytes([seq % 256]) * 160, language="vi")


def make_transcript() -> Transcript:
    return Transcript(
        transcript_id=transcript_id("call-7", "call-7/customer", 0), call_id="call-7", stream_id="call-7/customer",
        utterance_index=0, text="xin chào", language="vi", language_probability=0.75, start_ms=0, end_ms=1_200,
        words=[TranscriptWord(text="xin", start_ms=0, end_ms=500, probability=0.5),
               TranscriptWord(text="chào", start_ms=600, end_ms=1_200, probability=0.25)],
        model_name="whisper-base", backend="faster-whisper/cpu-int8", avg_logprob=-0.5, no_speech_prob=0.125,
        last_audio_capture_ts_ms=1_760_000_001_200, last_audio_received_ts_ms=1_760_000_001_210,
        produced_ts_ms=1_760_000_001_900)


def test_frame_carries_the_registry_id_of_the_topic_subject(schema_registry_url, client):
    topic = new_topic("audio-chunks")
    codec = AvroCodec(schema_registry_url)
    chunk = make_chunk(5)
    data = codec.encode_chunk(chunk, topic)

    registered = client.get_latest_version(subject_for(topic))
    assert registered.subject == f"{topic}-value"
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    assert schema_id == registered.schema_id == codec.schema_id_for("AudioChunk", topic)
    assert codec.decode_chunk(data, topic) == chunk

    # A second codec knows nothing yet: it must resolve the id through the registry.
    fresh = AvroCodec(schema_registry_url)
    assert fresh.decode_chunk(data, topic) == chunk
    assert fresh.decode_chunk(codec.encode_chunk(make_chunk(6), topic), topic) == make_chunk(6)


def test_transcript_round_trip_and_id_reuse(schema_registry_url, client):
    topic = new_topic("transcripts")
    codec = AvroCodec(schema_registry_url)
    transcript = make_transcript()
    first = codec.encode_transcript(transcript, topic)
    second = codec.encode_transcript(transcript, topic)
    assert first == second
    assert peek_schema_id(first) == client.get_latest_version(f"{topic}-value").schema_id
    assert AvroCodec(schema_registry_url).decode_transcript(first, topic) == transcript
    # Another codec registering the same schema under the same subject gets the same id.
    assert AvroCodec(schema_registry_url).schema_id_for("Transcript", topic) == peek_schema_id(first)


def test_lookup_only_mode_uses_the_registered_id(schema_registry_url):
    topic = new_topic("audio-chunks")
    writer = AvroCodec(schema_registry_url)
    schema_id = writer.schema_id_for("AudioChunk", topic)
    reader_only = AvroCodec(schema_registry_url, auto_register=False)
    assert peek_schema_id(reader_only.encode_chunk(make_chunk(), topic)) == schema_id
    with pytest.raises(SchemaRegistryUnavailable):
        reader_only.encode_chunk(make_chunk(), new_topic("never-registered"))


def test_confluent_serializers_read_and_write_the_same_bytes(schema_registry_url, client):
    topic = new_topic("audio-chunks")
    codec = AvroCodec(schema_registry_url)
    context = SerializationContext(topic, MessageField.VALUE)
    chunk = make_chunk(9)

    ours = codec.encode_chunk(chunk, topic)
    assert AvroDeserializer(client)(ours, context) == chunk.to_dict()

    theirs = AvroSerializer(client, schema_text("audio_chunk.avsc"))(chunk.to_dict(), context)
    assert theirs == ours
    assert AvroCodec(schema_registry_url).decode_chunk(theirs, topic) == chunk


def test_v1_producer_and_current_schema_under_backward_compatibility(schema_registry_url, client):
    topic = new_topic("transcripts")
    subject = subject_for(topic)
    client.set_compatibility(subject_name=subject, level="BACKWARD")
    v1_id = client.register_schema(subject, Schema(schema_text("history/transcript_v1.avsc"), "AVRO"))

    # A version-1 producer's record, framed with the registry's id for v1.
    v1 = fastavro.parse_schema(load_schema_file("history/transcript_v1.avsc"))
    body = io.BytesIO()
    record = {k: v for k, v in make_transcript().to_dict().items()
              if k not in ("sentences", "model_version", "timestamps_note", "redactions", "revision",
                               "stable_word_count", "stable_text")}
    fastavro.schemaless_writer(body, v1, record)
    old = frame(v1_id, body.getvalue())

    codec = AvroCodec(schema_registry_url)
    assert codec.decode_transcript(old, topic) == make_transcript()

    # The current schema passes the registry's BACKWARD check and gets a new id.
    data = codec.encode_transcript(make_transcript(), topic)
    assert peek_schema_id(data) != v1_id
    versions = client.get_versions(subject)
    assert len(versions) == 2
    old_reader = AvroCodec(schema_registry_url, reader_schemas={"Transcript": "history/transcript_v1.avsc"})
    assert old_reader.decode("Transcript", data, topic) == record


def test_unknown_id_is_a_decode_error_not_an_outage(schema_registry_url):
    codec = AvroCodec(schema_registry_url)
    body = codec.encode_chunk(make_chunk(), new_topic("audio-chunks"))[5:]
    for _ in range(2):  # the second answer comes from the codec's memory of unknown ids
        with pytest.raises(DecodeError) as caught:
            codec.decode_chunk(frame(2_000_000_000, body))
        assert caught.value.reason == "unknown_schema_id"
    with pytest.raises(DecodeError) as caught:
        codec.decode_chunk(b"\x01" + body)
    assert caught.value.reason == "bad_magic_byte"


def test_unreachable_registry_is_not_a_decode_error():
    data = AvroCodec().encode_chunk(make_chunk(), "audio")
    codec = AvroCodec("http://127.0.0.1:9/apis/ccompat/v7", registry_config={"max.retries": 0})
    with pytest.raises(SchemaRegistryUnavailable):
        codec.decode_chunk(data)
    with pytest.raises(SchemaRegistryUnavailable):
        codec.encode_chunk(make_chunk(), "audio")
