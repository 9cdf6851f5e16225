"""The role table of Kafka ACLs (streams/client/acls.py), read offline: what each role may touch.
Work in progress: the broker test with the authorizer on is what proves it (issue 23, item 4)."""

from __future__ import annotations

from streams.client.acls import ROLES, grants, kafka_acls_commands, strimzi_kafka_user
from streams.settings import Settings

SETTINGS = Settings()


def allowed(role: str, topic: str, operation: str) -> bool:
    return any(grant.resource == "topic" and operation in grant.operations and
               (grant.name == topic if grant.pattern == "literal" else topic.startswith(grant.name))
               for grant in grants(SETTINGS, role))


def test_each_role_touches_only_what_its_job_needs():
    s = SETTINGS
    assert allowed("producer", s.audio_topic, "Write") and allowed("producer", s.call_settings_topic, "Write")
    assert not allowed("producer", s.transcript_topic, "Read")  # the platform does not read transcripts
    assert not allowed("translator", s.audio_topic, "Read")  # the translator never hears the audio
    assert not any(allowed("reader", name, "Write") for name in (s.audio_topic, s.call_settings_topic))
    assert not any(allowed(role, s.call_settings_topic, "Write") for role in ROLES if role != "producer")
    assert allowed("worker", s.audio_topic, "Read") and allowed("worker", s.transcript_topic, "Write")
    assert allowed("worker", f"{s.app_id}-streams-changelog", "Write")
    assert not any(allowed(role, s.dead_letter_topic, "Read") for role in ROLES)  # nobody reads raw records


def test_the_outputs_kafka_and_strimzi_take():
    [first, *_] = kafka_acls_commands("User:callstt-producer", grants(SETTINGS, "producer"), "kafka:9092")
    assert first == ("kafka-acls.sh --bootstrap-server kafka:9092 --add --allow-principal User:callstt-producer "
                     f"--operation Write --operation Describe --topic {SETTINGS.audio_topic}")
    user = strimzi_kafka_user("callstt-speaker", "callstt", "speaker", grants(SETTINGS, "speaker"))
    assert user["kind"] == "KafkaUser" and user["spec"]["authorization"]["type"] == "simple"
    assert {"type": "topic", "name": f"{SETTINGS.app_id}-speak-", "patternType": "prefixed"} in \
        [acl["resource"] for acl in user["spec"]["authorization"]["acls"]]
