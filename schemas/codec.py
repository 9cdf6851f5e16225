"""The wire format of the project's Kafka events: the only module that knows it.

Every value is in the Confluent wire format::

    byte 0      magic byte 0
    bytes 1-4   schema id, 4-byte big-endian unsigned
    bytes 5-    the record in Avro binary encoding (no container header)

so any Confluent-compatible consumer (Confluent's AvroDeserializer, Kafka Connect,
ksqlDB, Apicurio's ccompat clients) reads our topics, and we read theirs.

Two ways to get schema ids:

* **embedded mode** (``AvroCodec()``, the default): ids come from the committed
  ``schemas/registry.json``, which maps id -> .avsc file. The ids are stable because
  the file is committed: never renumber one; a new schema version gets the next id
  appended (its predecessor moves to ``schemas/history/``) and ``current`` names the id
  each record type is written with. No network at all.
* **registry mode** (``AvroCodec(registry_url=...)``): the id is the one a
  Confluent-compatible Schema Registry (Confluent's, or Apicurio's
  ``/apis/ccompat/v7``) gives for the subject ``<topic>-value`` (TopicNameStrategy),
  through ``confluent_kafka.schema_registry.SchemaRegistryClient``. With
  ``auto_register=True`` (default) the committed schema is registered under that
  subject (the registry's compatibility rules apply); with ``auto_register=False`` it
  must already be registered there (looked up, not registered).

  We do the framing ourselves with ids from that client instead of calling
  ``AvroSerializer``/``AvroDeserializer``: it keeps one code path (and one set of
  ``DecodeError`` reasons) for both modes, avoids their per-message rule/transform
  machinery on the hot path, and lets a registry outage be told apart from a bad
  record (``SchemaRegistryUnavailable`` vs ``DecodeError``). The bytes are the same:
  the integration tests check that Confluent's own AvroDeserializer reads our frames
  and that we read AvroSerializer's.

Decoding reads the writer schema by the id in the frame and resolves it to the
reader schema (this checkout's current version of the record) with fastavro's schema
resolution: a version-1 Transcript decodes with today's schema (new fields get their
defaults), and ``AvroCodec(reader_schemas={"Transcript": old_schema})`` reads today's
records with an older schema.

Hot path (a chunk every 20 ms per call): schemas are parsed once per id and cached;
an encode is a validation plus one fastavro write, a decode one fastavro read.

Failures:

* ``DecodeError(ValueError)``, with a short ``reason`` for a dead-letter header:
  ``empty``, ``short_frame``, ``bad_magic_byte``, ``unknown_schema_id``,
  ``schema_mismatch`` (the id names another record type), ``truncated_avro``,
  ``bad_avro`` (body malformed: bad enum index, bad UTF-8, ...), ``trailing_bytes``.
* ``EncodeError(ValueError)``: the record does not fit the schema (wrong type, missing
  field, unknown field, integer out of range).
* ``SchemaRegistryUnavailable(RuntimeError)``: registry mode could not reach the
  registry or the registry refused a registration. Not the record's fault: retry,
  do not dead-letter.
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import validate

from callstt.schemas.errors import CallsttError
from callstt.schemas.records import AudioChunk, CallSettings, Transcript, Translation

SCHEMAS_DIR = Path(__file__).resolve().parent
EMBEDDED_REGISTRY = SCHEMAS_DIR / "registry.json"
NAMESPACE = "callstt"
MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")
HEADER_SIZE = HEADER.size  # 5

# How long an id the registry said it does not know is answered from memory, so a
# burst of garbage frames does not become a burst of registry requests.
_UNKNOWN_ID_TTL_S = 30.0
_UNKNOWN_ID_MAX = 1024


class DecodeError(CallsttError, ValueError):
    """The bytes are not a decodable event; `reason` is a short token for a dead-letter header."""

    # Every reason this module raises (see the module docstring), so a dead-letter consumer or a
    # test can check it knows each one.
    REASONS = frozenset({
        "empty", "short_frame", "bad_magic_byte", "unknown_schema_id", "schema_mismatch",
        "truncated_avro", "bad_avro", "trailing_bytes",
    })

    def __init__(self, reason: str, detail: str = "", schema_id: int | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.schema_id = schema_id
        super().__init__(f"{reason}: {detail}" if detail else reason)


class EncodeError(CallsttError, ValueError):
    """The record does not fit its Avro schema."""


class SchemaRegistryUnavailable(CallsttError, RuntimeError):
    """Registry mode could not reach the schema registry, or it refused the schema."""


def full_name(record_name: str) -> str:
    """'AudioChunk' -> 'callstt.AudioChunk' (names with a namespace are kept)."""
    return record_name if "." in record_name else f"{NAMESPACE}.{record_name}"


def subject_for(topic: str) -> str:
    """The registry subject of a topic's values (Confluent's TopicNameStrategy)."""
    return f"{topic}-value"


def load_schema_file(name: str) -> dict[str, Any]:
    """The JSON of a committed .avsc, by its path relative to schemas/."""
    return json.loads(schema_text(name))


def schema_text(name: str) -> str:
    """The text of a committed .avsc, by its path relative to schemas/."""
    return (SCHEMAS_DIR / name).read_text()


def peek_schema_id(data: bytes) -> int:
    """The schema id of a framed value, without decoding it (raises DecodeError)."""
    return _split_frame(data)[0]


def frame(schema_id: int, body: bytes) -> bytes:
    """Prefix an Avro body with the Confluent header."""
    return HEADER.pack(MAGIC_BYTE, schema_id) + body


class _Schema:
    """One parsed schema version, ready for fastavro."""

    __slots__ = ("name", "parsed", "text")

    def __init__(self, schema: dict[str, Any] | str) -> None:
        raw = json.loads(schema) if isinstance(schema, str) else schema
        if not isinstance(raw, dict) or raw.get("type") != "record":
            raise ValueError("only record schemas are supported")
        # Each parse gets its own named-type table: versions of one record reuse names.
        self.parsed = parse_schema(raw, named_schemas={})
        self.name: str = self.parsed["name"]
        # What is registered: the .avsc text stripped, exactly what Confluent's AvroSerializer
        # registers for the same file, so both get the same id even from registries that
        # compare schemas as text (Apicurio 2.x does: a trailing newline is a new id).
        self.text = schema.strip() if isinstance(schema, str) else json.dumps(raw)


class _Embedded:
    """schemas/registry.json, parsed once per process."""

    def __init__(self, path: Path) -> None:
        spec = json.loads(path.read_text())
        self.by_id: dict[int, _Schema] = {int(i): _Schema(schema_text(f)) for i, f in spec["schemas"].items()}
        self.by_file: dict[str, int] = {f: int(i) for i, f in spec["schemas"].items()}
        self.current: dict[str, int] = {name: int(i) for name, i in spec["current"].items()}
        for name, schema_id in self.current.items():
            if self.by_id[schema_id].name != name:
                raise ValueError(f"registry.json: id {schema_id} is {self.by_id[schema_id].name}, not {name}")


@lru_cache(maxsize=None)
def _embedded(path: Path = EMBEDDED_REGISTRY) -> _Embedded:
    return _Embedded(path)


def history_file(record_name: str, version: int) -> str:
    """The committed file of an earlier version of a record: ('CallSettings', 1) ->
    'history/call_settings_v1.avsc' (raises ValueError when there is none)."""
    short = full_name(record_name).split(".")[-1]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in short).lstrip("_")
    name = f"history/{snake}_v{version}.avsc"
    if not (SCHEMAS_DIR / name).is_file():
        versions = sorted(p.stem.rsplit("_v", 1)[1] for p in (SCHEMAS_DIR / "history").glob(f"{snake}_v*.avsc"))
        raise ValueError(f"{short} has no earlier version {version} (earlier versions: {', '.join(versions) or 'none'})")
    return name


def _split_frame(data: bytes) -> tuple[int, memoryview]:
    if not data:
        raise DecodeError("empty", "no bytes")
    if len(data) < HEADER_SIZE:
        if data[0] != MAGIC_BYTE:
            raise DecodeError("bad_magic_byte", f"first byte is {data[0]}, expected {MAGIC_BYTE}")
        raise DecodeError("short_frame", f"{len(data)} bytes, a frame needs at least {HEADER_SIZE}")
    magic, schema_id = HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise DecodeError("bad_magic_byte", f"first byte is {data[0]}, expected {MAGIC_BYTE}")
    return schema_id, memoryview(data)[HEADER_SIZE:]


class AvroCodec:
    """Encodes and decodes the project's events in the Confluent wire format.

    `registry_url`: a Confluent-compatible registry (e.g. Apicurio's
    ``http://127.0.0.1:8081/apis/ccompat/v7``); None for the embedded ids.
    `reader_schemas`: record name -> schema (dict, JSON text or path relative to
    schemas/) to decode with instead of this checkout's current version.
    `write_versions`: record name -> an earlier version number to write instead of the current
    one (its file in schemas/history/), for a rolling upgrade: while workers of the previous
    version still run, or read what this one writes, write what they can read (fields the
    earlier version lacks are left out; readers of the current version see their defaults).
    Thread-safe; create one per process and reuse it.
    """

    def __init__(self, registry_url: str | None = None, *, auto_register: bool = True,
                 reader_schemas: Mapping[str, dict[str, Any] | str] | None = None,
                 registry_config: Mapping[str, Any] | None = None,
                 write_versions: Mapping[str, int] | None = None) -> None:
        self.registry_url = registry_url
        self.auto_register = auto_register
        self._embedded = _embedded()
        self._lock = threading.Lock()
        # What we write with: full record name -> schema (this checkout's current version, unless
        # `write_versions` names an earlier one).
        self._write_ids = dict(self._embedded.current)  # (embedded mode)
        self._writers: dict[str, _Schema] = {name: self._embedded.by_id[i] for name, i in self._write_ids.items()}
        self._readers: dict[str, _Schema] = dict(self._writers)
        # Records written with an earlier version (`write_versions`): name -> its field names.
        self._pinned: dict[str, frozenset[str]] = {}
        for name, version in (write_versions or {}).items():
            name, schema_id = full_name(name), self._embedded.by_file[history_file(name, version)]
            self._write_ids[name], self._writers[name] = schema_id, self._embedded.by_id[schema_id]
            self._pinned[name] = frozenset(field["name"] for field in self._writers[name].parsed["fields"])
        for name, schema in (reader_schemas or {}).items():
            if isinstance(schema, str) and schema.strip().endswith(".avsc"):
                schema = schema_text(schema.strip())
            parsed = _Schema(schema)
            if parsed.name != full_name(name):
                raise ValueError(f"reader schema for {name} is the record {parsed.name}")
            self._readers[full_name(name)] = parsed
        # Schema id -> parsed writer schema; embedded ids are known up front.
        self._by_id: dict[int, _Schema] = {} if registry_url else dict(self._embedded.by_id)
        # (subject, record) -> id we write with.
        self._ids: dict[tuple[str, str], int] = {}
        self._unknown_ids: dict[int, float] = {}
        self._client = None
        if registry_url:
            # only with CALLSTT_SCHEMA_REGISTRY_URL set: the client takes 0.4 s to import
            from confluent_kafka.schema_registry import SchemaRegistryClient

            self._client = SchemaRegistryClient({"url": registry_url, **(registry_config or {})})

    # -- typed API ---------------------------------------------------------------

    def encode_chunk(self, chunk: AudioChunk, topic: str) -> bytes:
        return self.encode("AudioChunk", chunk.to_dict(), topic)

    def decode_chunk(self, data: bytes, topic: str | None = None) -> AudioChunk:
        return AudioChunk.from_dict(self.decode("AudioChunk", data, topic))

    def encode_transcript(self, transcript: Transcript, topic: str) -> bytes:
        return self.encode("Transcript", transcript.to_dict(), topic)

    def decode_transcript(self, data: bytes, topic: str | None = None) -> Transcript:
        return Transcript.from_dict(self.decode("Transcript", data, topic))

    def encode_call_settings(self, settings: CallSettings, topic: str) -> bytes:
        return self.encode("CallSettings", settings.to_dict(), topic)

    def decode_call_settings(self, data: bytes, topic: str | None = None) -> CallSettings:
        return CallSettings.from_dict(self.decode("CallSettings", data, topic))

    def encode_translation(self, translation: Translation, topic: str) -> bytes:
        return self.encode("Translation", translation.to_dict(), topic)

    def decode_translation(self, data: bytes, topic: str | None = None) -> Translation:
        return Translation.from_dict(self.decode("Translation", data, topic))

    # -- generic API -------------------------------------------------------------

    def encode(self, record_name: str, record: Mapping[str, Any], topic: str) -> bytes:
        """Validate `record` against the current schema of `record_name` and frame it."""
        name = full_name(record_name)
        schema = self._writers.get(name)
        if schema is None:
            raise KeyError(f"no schema for record {record_name!r}")
        schema_id = self.schema_id_for(name, topic)
        if name in self._pinned:  # an earlier version: without the fields it does not have
            record = {key: value for key, value in record.items() if key in self._pinned[name]}
        try:
            validate(record, schema.parsed, raise_errors=True)
            out = io.BytesIO()
            out.write(HEADER.pack(MAGIC_BYTE, schema_id))
            schemaless_writer(out, schema.parsed, record, strict_allow_default=True)
        except Exception as error:  # fastavro: ValidationError, TypeError, ValueError, OverflowError
            raise EncodeError(f"{name} does not fit its schema: {error}") from error
        return out.getvalue()

    def decode(self, record_name: str, data: bytes, topic: str | None = None) -> dict[str, Any]:
        """Decode one framed value into the dict of `record_name`'s reader schema (raises DecodeError)."""
        name = full_name(record_name)
        reader = self._readers.get(name)
        if reader is None:
            raise KeyError(f"no schema for record {record_name!r}")
        schema_id, body = _split_frame(data)
        writer = self._by_id.get(schema_id) or self._writer_schema(schema_id)
        if writer.name != name:
            raise DecodeError("schema_mismatch", f"schema id {schema_id} is {writer.name}, expected {name}", schema_id)
        stream = io.BytesIO(body)
        try:
            record = schemaless_reader(stream, writer.parsed, None if writer is reader else reader.parsed)
        except EOFError as error:
            raise DecodeError("truncated_avro", str(error), schema_id) from error
        except Exception as error:  # malformed body: bad enum index, bad UTF-8, bad union index...
            # A body cut short inside a string or bytes reads as short, not as EOF.
            reason = "truncated_avro" if stream.tell() >= len(body) else "bad_avro"
            raise DecodeError(reason, f"{type(error).__name__}: {error}", schema_id) from error
        if stream.tell() != len(body):
            raise DecodeError("trailing_bytes", f"{len(body) - stream.tell()} bytes after the record", schema_id)
        return record

    # -- schema ids --------------------------------------------------------------

    def schema_id_for(self, record_name: str, topic: str) -> int:
        """The id this codec writes `record_name` with on `topic`."""
        name = full_name(record_name)
        if self._client is None:
            return self._write_ids[name]
        key = (subject_for(topic), name)
        schema_id = self._ids.get(key)
        if schema_id is None:
            schema_id = self._register(key)
        return schema_id

    def _register(self, key: tuple[str, str]) -> int:
        # only with CALLSTT_SCHEMA_REGISTRY_URL set: the client takes 0.4 s to import
        from confluent_kafka.schema_registry import Schema, SchemaRegistryError

        subject, name = key
        writer = self._writers[name]
        with self._lock:
            if key in self._ids:
                return self._ids[key]
            try:
                if self.auto_register:
                    schema_id = self._client.register_schema(subject, Schema(writer.text, "AVRO"))
                else:
                    schema_id = self._client.lookup_schema(subject, Schema(writer.text, "AVRO")).schema_id
            except SchemaRegistryError as error:
                action = "register" if self.auto_register else "find"
                raise SchemaRegistryUnavailable(f"could not {action} {name} under {subject}: {error}") from error
            except Exception as error:  # connection refused, timeout...
                raise SchemaRegistryUnavailable(f"schema registry {self.registry_url} unreachable: {error}") from error
            self._ids[key] = schema_id
            self._by_id.setdefault(schema_id, writer)
            return schema_id

    def _writer_schema(self, schema_id: int) -> _Schema:
        if self._client is None:
            raise DecodeError("unknown_schema_id", f"schema id {schema_id} is not in registry.json", schema_id)
        # only with CALLSTT_SCHEMA_REGISTRY_URL set: the client takes 0.4 s to import
        from confluent_kafka.schema_registry import SchemaRegistryError

        seen = self._unknown_ids.get(schema_id)
        if seen is not None and time.monotonic() - seen < _UNKNOWN_ID_TTL_S:
            raise DecodeError("unknown_schema_id", f"the registry has no schema id {schema_id}", schema_id)
        try:
            registered = self._client.get_schema(schema_id)
        except SchemaRegistryError as error:
            if error.http_status_code == 404:
                with self._lock:
                    if len(self._unknown_ids) >= _UNKNOWN_ID_MAX:
                        self._unknown_ids.clear()
                    self._unknown_ids[schema_id] = time.monotonic()
                raise DecodeError("unknown_schema_id", f"the registry has no schema id {schema_id}", schema_id) from None
            raise SchemaRegistryUnavailable(f"schema registry failed on id {schema_id}: {error}") from error
        except Exception as error:
            raise SchemaRegistryUnavailable(f"schema registry {self.registry_url} unreachable: {error}") from error
        if (registered.schema_type or "AVRO").upper() != "AVRO":
            raise DecodeError("schema_mismatch", f"schema id {schema_id} is {registered.schema_type}, not Avro", schema_id)
        try:
            schema = _Schema(registered.schema_str)
        except Exception as error:
            raise DecodeError("schema_mismatch", f"schema id {schema_id} is not an Avro record: {error}", schema_id) from error
        # The registry's copy of a schema we read with: take the reader itself (no resolution step).
        reader = self._readers.get(schema.name)
        if reader is not None and reader.parsed == schema.parsed:
            schema = reader
        with self._lock:
            return self._by_id.setdefault(schema_id, schema)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
