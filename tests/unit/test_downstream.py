"""streams/downstream.py without Kafka: the downstream agents' app identity, their dead letters and
the changelog topics created before Faust starts."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from callstt.schemas.codec import AvroCodec
from callstt.streams import downstream
from callstt.streams.settings import Settings
from callstt.streams.speech.app import create_speech_app
from callstt.streams.translation.app import create_translation_app


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


def test_the_tables_changelogs_are_made_compacted_with_the_tables_partitions(settings):
    """What streams/lifecycle.py creates before Faust starts: each table's changelog, compacted,
    one partition per partition of the topics the table follows; and the agent's source topics,
    which must be co-partitioned with it."""
    from callstt.streams.client.topics import changelog_topics
    from callstt.streams.lifecycle import source_topics

    translator, speaker = create_translation_app(settings, lambda: None), create_speech_app(settings, lambda: None)
    (topic,) = changelog_topics(settings, translator.tables.values())
    assert (topic.name, topic.partitions, topic.config["cleanup.policy"]) == \
        ("acme-translate-call-settings-changelog", 4, "compact")
    assert [spec.name for spec in changelog_topics(settings, speaker.tables.values())] == \
        ["acme-speak-call-settings-changelog"]  # the speaker keeps the calls' settings too (their voice)
    assert source_topics(translator) == [settings.transcript_topic, settings.partial_topic,
                                         settings.call_settings_topic]
    assert source_topics(speaker) == [settings.translation_topic, settings.call_settings_topic]
