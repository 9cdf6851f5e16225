"""Least-privilege Kafka ACLs: one principal per role, each allowed what its job needs and no more.

The role table (`grants`) is the one place that says who may touch which topic; from it come
`callstt acls` (the `kafka-acls.sh` commands, Strimzi `KafkaUser`s, or the ACLs applied at once
by an admin), the Kubernetes manifests' users, and the topics each process creates at start when
missing (`topics_used`: a role never asks to create what it may not see).

What the table rests on (proved against a broker with the authorizer on: tests/faults/test_kafka_acls.py):
- the project topics are made by the admin role (`callstt topics create`); each agent makes only
  its own tables' changelogs (Create on its app id's changelog names, as Kafka Streams apps do);
- consumers outside a consumer group (the live-page follower, POST /transcribe's reader, the
  broker probe) read assigned partitions and need no group ACL; `callstt tail`'s groups start
  with `callstt-tail-`, replay's with `callstt-replay-`;
- Read and Write imply Describe in Kafka; Describe is listed anyway so the table reads plainly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient, ResourcePatternType,
                                   ResourceType)

from callstt.streams.agents import AGENTS, AgentSpec
from callstt.streams.client.topics import admin_config, control_topic, project_topics, worker_changelog_topic
from callstt.streams.settings import Settings

READ, WRITE, DESCRIBE, CREATE = "Read", "Write", "Describe", "Create"
DESCRIBE_CONFIGS, ALTER_CONFIGS, DELETE = "DescribeConfigs", "AlterConfigs", "Delete"
READS, WRITES = (READ, DESCRIBE), (WRITE, DESCRIBE)  # what reading or writing a topic takes

ROLES = {
    "producer": "the call platform: writes audio and call settings",
    "worker": "callstt worker: reads audio, control and call settings; writes transcripts, interims, dead letters, "
              "control and its changelog; reads translations and speech for its live page",
    **{agent.name: agent.role for agent in AGENTS},  # the downstream agents (streams/agents.py)
    "gateway": "callstt gateway: writes audio, call settings and its stream marks; reads them back to resume a "
               "stream, and the transcripts, interims, translations and speech of the calls it serves",
    "reader": "callstt tail and analytics: reads transcripts, interims, translations and speech",
    "replay": "callstt replay: reads audio and call settings; writes the replay's output topic",
    "admin": "creates and configures the topics (callstt topics create), reads dead letters, rewinds consumer groups",
}


@dataclass(frozen=True)
class Grant:
    """Operations allowed on one resource (a topic or a consumer group)."""

    resource: str  # "topic" or "group"
    name: str
    operations: tuple[str, ...]
    pattern: str = "literal"  # or "prefixed": every name that starts with `name`

    def allows(self, resource: str, name: str, operation: str) -> bool:
        matches = name == self.name if self.pattern == "literal" else name.startswith(self.name)
        return resource == self.resource and matches and operation in self.operations


def topic(name: str, *operations: str, pattern: str = "literal") -> Grant:
    return Grant("topic", name, operations, pattern)


def changelogs(prefix: str) -> Grant:
    """An agent's own tables' changelog topics (all start with its app id): it creates them."""
    return topic(prefix, READ, WRITE, DESCRIBE, CREATE, pattern="prefixed")


def grants(settings: Settings, role: str, replay_topic: str | None = None) -> list[Grant]:
    """What `role` may do, for these settings' topic names and app id."""
    app, s = settings.app_id, settings
    table = {
        "producer": [topic(s.audio_topic, *WRITES), topic(s.call_settings_topic, *WRITES)],
        "worker": [
            topic(s.audio_topic, READ, WRITE, DESCRIBE),  # POST /transcribe publishes its upload
            topic(control_topic(s), READ, WRITE, DESCRIBE),
            topic(s.call_settings_topic, *READS),
            topic(s.transcript_topic, READ, WRITE, DESCRIBE),  # POST /transcribe waits for its own
            topic(s.partial_topic, *WRITES),
            topic(s.dead_letter_topic, *WRITES),
            topic(s.translation_topic, *READS), topic(s.speech_topic, *READS),  # the live page
            changelogs(worker_changelog_topic(s)),
            Grant("group", app, (READ,)),
        ],
        **{agent.name: agent_grants(s, agent) for agent in AGENTS},
        # its consumers are group-less (assigned partitions): no group grant
        "gateway": [topic(s.audio_topic, READ, WRITE, DESCRIBE), topic(s.call_settings_topic, *WRITES),
                    topic(s.gateway_session_topic, READ, WRITE, DESCRIBE)]
                   + [topic(name, *READS) for name in (s.transcript_topic, s.partial_topic, s.translation_topic,
                                                       s.speech_topic)],
        "reader": [topic(name, *READS) for name in (s.transcript_topic, s.partial_topic, s.translation_topic,
                                                   s.partial_translation_topic, s.speech_topic)]
                  + [Grant("group", "callstt-tail-", (READ,), "prefixed")],
        "replay": [topic(s.audio_topic, *READS), topic(s.call_settings_topic, *READS),
                   topic(replay_topic or f"{s.transcript_topic}.replay", WRITE, DESCRIBE, CREATE),
                   Grant("group", "callstt-replay-", (READ,), "prefixed")],
        "admin": [topic(name, CREATE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS)
                  for name in [spec.name for spec in project_topics(s)] + [worker_changelog_topic(s)]]
                 + [topic(agent.changelog_prefix(s), CREATE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS,
                          pattern="prefixed") for agent in AGENTS]
                 + [topic(s.dead_letter_topic, READ)]  # inspecting bad records
                 + [Grant("group", name, (READ, DESCRIBE)) for name in (app, *(a.app_id(s) for a in AGENTS))],
    }
    if role not in table:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    return table[role]


def agent_grants(settings: Settings, agent: AgentSpec) -> list[Grant]:
    """A downstream agent's role: read its inputs and the calls' settings, write its outputs and
    dead letters, make and use its own tables' changelogs, join its consumer group."""
    return ([topic(name, *READS) for name in (*agent.reads(settings), settings.call_settings_topic)]
            + [topic(name, *WRITES) for name in (*agent.writes(settings), settings.dead_letter_topic)]
            + [changelogs(agent.changelog_prefix(settings)), Grant("group", agent.app_id(settings), (READ,))])


def allowed(role_grants: list[Grant], resource: str, name: str, operation: str) -> bool:
    return any(grant.allows(resource, name, operation) for grant in role_grants)


def topics_used(settings: Settings, role: str) -> list[str]:
    """The project topics `role` reads or writes (those a process of that role makes when missing)."""
    role_grants = grants(settings, role)
    return [spec.name for spec in project_topics(settings)
            if allowed(role_grants, "topic", spec.name, DESCRIBE)]


def kafka_acls_commands(principal_name: str, role_grants: list[Grant], bootstrap: str) -> list[str]:
    """The `kafka-acls.sh` commands that give `principal_name` ("User:callstt-worker") these grants."""
    commands = []
    for grant in role_grants:
        target = f"--{grant.resource} {grant.name}"
        operations = " ".join(f"--operation {operation}" for operation in grant.operations)
        pattern = " --resource-pattern-type prefixed" if grant.pattern == "prefixed" else ""
        commands.append(f"kafka-acls.sh --bootstrap-server {bootstrap} --add --allow-principal {principal_name} "
                        f"{operations} {target}{pattern}")
    return commands


def strimzi_kafka_users(settings: Settings, roles: list[str], user_prefix: str = "callstt-",
                        cluster: str = "callstt") -> list[dict[str, Any]]:
    """Each role's KafkaUser manifest (`callstt acls --format strimzi`, infra/k8s/kafka-users.yaml)."""
    return [strimzi_kafka_user(user_prefix + role, cluster, role, grants(settings, role)) for role in roles]


def strimzi_kafka_user(user: str, cluster: str, role: str, role_grants: list[Grant]) -> dict[str, Any]:
    """A Strimzi KafkaUser (SCRAM-SHA-512, simple authorization) with these grants."""
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaUser",
        "metadata": {"name": user, "labels": {"strimzi.io/cluster": cluster, "app.kubernetes.io/part-of": "callstt",
                                              "app.kubernetes.io/component": role}},
        "spec": {"authentication": {"type": "scram-sha-512"},
                 "authorization": {"type": "simple", "acls": [
                     {"resource": {"type": grant.resource, "name": grant.name, "patternType": grant.pattern},
                      "operations": list(grant.operations)} for grant in role_grants]}},
    }


def acl_bindings(principal_name: str, role_grants: list[Grant]) -> list[AclBinding]:
    """The grants as confluent-kafka AclBindings (one per operation), for `apply_acls`."""
    operation = {READ: AclOperation.READ, WRITE: AclOperation.WRITE, DESCRIBE: AclOperation.DESCRIBE,
                 CREATE: AclOperation.CREATE, DESCRIBE_CONFIGS: AclOperation.DESCRIBE_CONFIGS,
                 ALTER_CONFIGS: AclOperation.ALTER_CONFIGS, DELETE: AclOperation.DELETE}
    resource = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}
    pattern = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
    return [AclBinding(resource[grant.resource], grant.name, pattern[grant.pattern], principal_name, "*",
                       operation[name], AclPermissionType.ALLOW)
            for grant in role_grants for name in grant.operations]


def apply_acls(settings: Settings, bindings: list[AclBinding], timeout: float = 30.0) -> None:
    """Add `bindings` on the broker (as the principal `settings` connect with, which needs Alter on
    the cluster: a super user or the cluster's admin); raises KafkaException if refused."""
    admin = AdminClient(admin_config(settings))
    for future in admin.create_acls(bindings, request_timeout=timeout).values():
        future.result(timeout=timeout)
