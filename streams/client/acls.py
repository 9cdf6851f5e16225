"""Least-privilege Kafka ACLs: one principal per role, each allowed what its job needs and no more.

Work in progress (issue 23, items 3-4): the role table below is written from the code, not yet
proved against a broker with the authorizer on. What is known:
- every consumer outside the consumer groups (the worker's live-page follower, POST /transcribe's
  reader, the broker probe, replay) reads with assigned partitions: no group ACL for those;
- Faust declares (creates) internal topics itself unless `topic_allow_declare` is off; the
  processes create their topics before Faust starts (streams/lifecycle.py), so turning it off
  would spare the roles the Create operation;
- `prepare_topics` creates every project topic, not only the process's own: under ACLs a role
  may neither see (Describe) nor create the others, so it must create only the missing topics it
  uses, or leave creation to the admin role (`callstt topics create`).
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.client.topics import control_topic
from streams.settings import Settings

READ, WRITE, DESCRIBE, CREATE = "Read", "Write", "Describe", "Create"
DESCRIBE_CONFIGS, ALTER_CONFIGS = "DescribeConfigs", "AlterConfigs"

ROLES = {
    "producer": "the call platform: writes audio and call settings",
    "worker": "callstt worker: reads audio, control and call settings; writes transcripts, interims, dead letters, "
              "control and its changelog; reads translations and speech for its live page",
    "translator": "callstt translator: reads transcripts, interims and call settings; writes translations and dead letters",
    "speaker": "callstt speaker: reads translations and call settings; writes speech and dead letters",
    "reader": "callstt tail and analytics: reads transcripts, interims, translations and speech",
    "replay": "callstt replay: reads audio and call settings; writes the replay's output topic",
    "admin": "creates and configures the topics (callstt topics create), rewinds consumer groups",
}


@dataclass(frozen=True)
class Grant:
    """Operations allowed on one resource (a topic, a group or the cluster)."""

    resource: str  # "topic", "group", "cluster"
    name: str
    operations: tuple[str, ...]
    pattern: str = "literal"  # or "prefixed": every name that starts with `name`


def topic(name: str, *operations: str, pattern: str = "literal") -> Grant:
    return Grant("topic", name, operations, pattern)


def grants(settings: Settings, role: str, replay_topic: str | None = None) -> list[Grant]:
    """What `role` may do, for these settings' topic names and app id."""
    app = settings.app_id
    read, write = (READ, DESCRIBE), (WRITE, DESCRIBE)
    changelog_ops = (READ, WRITE, DESCRIBE)
    table = {
        "producer": [topic(settings.audio_topic, *write), topic(settings.call_settings_topic, *write)],
        "worker": [
            topic(settings.audio_topic, READ, WRITE, DESCRIBE),  # POST /transcribe publishes its upload
            topic(control_topic(settings), READ, WRITE, DESCRIBE),
            topic(settings.call_settings_topic, *read),
            topic(settings.transcript_topic, READ, WRITE, DESCRIBE),  # POST /transcribe waits for its own
            topic(settings.partial_topic, *write),
            topic(settings.dead_letter_topic, *write),
            topic(settings.translation_topic, *read), topic(settings.speech_topic, *read),  # the live page
            topic(f"{app}-streams-changelog", *changelog_ops),
            Grant("group", app, (READ,)),
        ],
        "translator": [
            topic(settings.transcript_topic, *read), topic(settings.partial_topic, *read),
            topic(settings.call_settings_topic, *read),
            topic(settings.translation_topic, *write), topic(settings.partial_translation_topic, *write),
            topic(settings.dead_letter_topic, *write),
            topic(f"{app}-translate-", *changelog_ops, pattern="prefixed"),
            Grant("group", f"{app}-translate", (READ,)),
        ],
        "speaker": [
            topic(settings.translation_topic, *read), topic(settings.call_settings_topic, *read),
            topic(settings.speech_topic, *write), topic(settings.dead_letter_topic, *write),
            topic(f"{app}-speak-", *changelog_ops, pattern="prefixed"),
            Grant("group", f"{app}-speak", (READ,)),
        ],
        "reader": [topic(name, *read) for name in (settings.transcript_topic, settings.partial_topic,
                                                   settings.translation_topic, settings.partial_translation_topic,
                                                   settings.speech_topic)]
                  + [Grant("group", "callstt-tail-", (READ,), "prefixed")],
        "replay": [topic(settings.audio_topic, *read), topic(settings.call_settings_topic, *read),
                   topic(replay_topic or f"{settings.transcript_topic}.replay", *write)],
        "admin": [Grant("cluster", "kafka-cluster", (CREATE, DESCRIBE, DESCRIBE_CONFIGS))]
                 + [topic(name, CREATE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS)
                    for name in (*project_topic_names(settings), f"{app}-streams-changelog")]
                 + [topic(f"{app}-{suffix}-", CREATE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS, pattern="prefixed")
                    for suffix in ("translate", "speak")]
                 + [Grant("group", name, (READ, DESCRIBE)) for name in (app, f"{app}-translate", f"{app}-speak")],
    }
    if role not in table:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    return table[role]


def project_topic_names(settings: Settings) -> list[str]:
    from streams.client.topics import project_topics

    return [spec.name for spec in project_topics(settings)]


def kafka_acls_commands(principal: str, role_grants: list[Grant], bootstrap: str) -> list[str]:
    """The `kafka-acls.sh` commands that give `principal` ("User:callstt-worker") these grants."""
    commands = []
    for grant in role_grants:
        target = {"topic": f"--topic {grant.name}", "group": f"--group {grant.name}", "cluster": "--cluster"}
        operations = " ".join(f"--operation {operation}" for operation in grant.operations)
        pattern = " --resource-pattern-type prefixed" if grant.pattern == "prefixed" else ""
        commands.append(f"kafka-acls.sh --bootstrap-server {bootstrap} --add --allow-principal {principal} "
                        f"{operations} {target[grant.resource]}{pattern}")
    return commands


def strimzi_kafka_user(user: str, cluster: str, role: str, role_grants: list[Grant]) -> dict:
    """A Strimzi KafkaUser (SCRAM-SHA-512, simple authorization) with these grants."""
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaUser",
        "metadata": {"name": user, "labels": {"strimzi.io/cluster": cluster, "app.kubernetes.io/part-of": "callstt",
                                              "app.kubernetes.io/component": role}},
        "spec": {"authentication": {"type": "scram-sha-512"},
                 "authorization": {"type": "simple", "acls": [
                     {"resource": {"type": grant.resource} if grant.resource == "cluster" else
                      {"type": grant.resource, "name": grant.name, "patternType": grant.pattern},
                      "operations": list(grant.operations)} for grant in role_grants]}},
    }
