"""The role table of Kafka ACLs (streams/client/acls.py), read offline: what each role may touch,
and the forms Kafka's kafka-acls tool and Strimzi take. tests/faults/test_kafka_acls.py proves the same
table against a broker with the authorizer on."""

from __future__ import annotations

from callstt.streams.client.acls import ROLES, allowed, grants, kafka_acls_commands, strimzi_kafka_user, topics_used
from callstt.streams.settings import Settings

SETTINGS = Settings()


def may(role: str, topic: str, operation: str) -> bool:
    return allowed(grants(SETTINGS, role), "topic", topic, operation)


def test_each_role_touches_only_what_its_job_needs():
    s = SETTINGS
    assert may("producer", s.audio_topic, "Write") and may("producer", s.call_settings_topic, "Write")
    assert not may("producer", s.transcript_topic, "Read")  # the platform does not read transcripts
    assert not may("translator", s.audio_topic, "Read")  # the translator never hears the audio
    assert not any(may("reader", name, "Write") for name in (s.audio_topic, s.call_settings_topic))
    # the platform's own producer, or the gateway that produces for its WebSocket clients
    assert [role for role in ROLES if may(role, s.call_settings_topic, "Write")] == ["producer", "gateway"]
    assert may("gateway", s.transcript_topic, "Read") and not may("gateway", s.transcript_topic, "Write")
    assert may("gateway", s.gateway_session_topic, "Write") and not may("worker", s.gateway_session_topic, "Read")
    assert may("worker", s.audio_topic, "Read") and may("worker", s.transcript_topic, "Write")
    assert may("worker", f"{s.app_id}-streams-changelog", "Create")  # its own changelog, nobody else's
    assert not may("worker", f"{s.app_id}-translate-settings-changelog", "Read")
    assert [role for role in ROLES if may(role, s.dead_letter_topic, "Read")] == ["admin"]  # raw records
    assert not any(may(role, name, "Create") for role in ROLES if role != "admin"
                   for name in topics_used(s, "admin"))  # the project topics are the admin's to make


def test_the_outputs_kafka_and_strimzi_take():
    [first, *_] = kafka_acls_commands("User:callstt-producer", grants(SETTINGS, "producer"), "kafka:9092")
    assert first == ("kafka-acls.sh --bootstrap-server kafka:9092 --add --allow-principal User:callstt-producer "
                     f"--operation Write --operation Describe --topic {SETTINGS.audio_topic}")
    user = strimzi_kafka_user("callstt-speaker", "callstt", "speaker", grants(SETTINGS, "speaker"))
    assert user["kind"] == "KafkaUser" and user["spec"]["authorization"]["type"] == "simple"
    assert {"type": "topic", "name": f"{SETTINGS.app_id}-speak-", "patternType": "prefixed"} in \
        [acl["resource"] for acl in user["spec"]["authorization"]["acls"]]
