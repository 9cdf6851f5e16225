"""streams/downstream.py without Kafka: the downstream agents' app identity, their dead letters and
the changelog topics created before the worker starts."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, KafkaException

from schemas.codec import AvroCodec
from streams import downstream
from streams.settings import Settings
from streams.speech.app import create_speech_app
from streams.translation.app import create_translation_app


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings.from_env({"CALLSTT_APP_ID": "acme", "CALLSTT_DATA_DIR": str(tmp_path),
                              "CALLSTT_TOPIC_PARTITIONS": "4", "CALLSTT_DEAD_LETTER_TOPIC": "acme.dead"})


def test_each_agent_has_its_own_app_id_data_folder_and_port(settings, tmp_path):
    translator, speaker = create_translation_app(settings, lambda: None), create_speech_app(settings, lambda: None)
    assert (translator.conf.id, str(translator.conf.datadir), translator.conf.web_port) == \
        ("acme-translate", str(tmp_path / "translate"), settings.translator_web_port)
    assert (speaker.conf.id, str(speaker.conf.datadir), speaker.conf.web_port) == \
        ("acme-speak", str(tmp_path / "speak"), settings.speaker_web_port)
    assert str(translator.conf.store) == str(speaker.conf.store) == "rocksdb:"  # the calls' settings, kept


class Sent:
    def __init__(self):
        self.records = []

    async def send(self, key, value, headers):
        self.records.append((key, value, headers))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done  # the broker's acknowledgement


def test_a_record_that_does_not_decode_is_dead_lettered_with_its_reason(settings, caplog):
    app = create_speech_app(settings, lambda: None)
    counted = SimpleNamespace(n=0)
    letters = downstream.DeadLetters(app, settings, SimpleNamespace(inc=lambda: setattr(counted, "n", counted.n + 1)),
                                     logging.getLogger("callstt.test"))
    assert letters.topic.get_topic_name() == "acme.dead"
    letters.topic = Sent()
    message = SimpleNamespace(key=b"call-1", value=b"\x00\x00\x00\x00\x06not avro", topic="acme.translations",
                              partition=2, offset=41)
    with caplog.at_level(logging.WARNING):
        assert asyncio.run(letters.decode(message, AvroCodec().decode_translation)) is None
    ((key, value, headers),) = letters.topic.records
    assert (key, value, counted.n) == (b"call-1", message.value, 1)
    assert headers["source_topic"] == b"acme.translations" and headers["source_offset"] == b"41"
    assert "dead-letter" in caplog.text and "offset 41" in caplog.text
    assert asyncio.run(letters.decode(message, lambda value: "decoded")) == "decoded"  # the rest go on


class RecordingAdmin:
    made: list = []
    existing: set = set()

    def __init__(self, config):
        pass

    def create_topics(self, topics, **kwargs):
        RecordingAdmin.made = topics
        futures = {}
        for topic in topics:
            futures[topic.topic] = future = Future()
            if topic.topic in RecordingAdmin.existing:
                future.set_exception(KafkaException(KafkaError(KafkaError.TOPIC_ALREADY_EXISTS)))
            else:
                future.set_result(None)
        return futures


def test_the_tables_changelogs_are_created_compacted_with_the_tables_partitions(settings, monkeypatch):
    import streams.client.topics

    monkeypatch.setattr(streams.client.topics, "AdminClient", RecordingAdmin)
    RecordingAdmin.existing = set()
    assert downstream.ensure_changelogs(settings, create_translation_app(settings, lambda: None)) == \
        ["acme-translate-call-settings-changelog"]
    (topic,) = RecordingAdmin.made
    assert topic.num_partitions == 4 and topic.config["cleanup.policy"] == "compact"
    RecordingAdmin.existing = {"acme-translate-call-settings-changelog"}  # a restart: nothing to do
    assert downstream.ensure_changelogs(settings, create_translation_app(settings, lambda: None)) == []
    RecordingAdmin.made = []
    assert downstream.ensure_changelogs(settings, create_speech_app(settings, lambda: None)) == \
        ["acme-speak-call-settings-changelog"]  # the speaker keeps the calls' settings too (their voice)
