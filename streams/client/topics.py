"""The project's topics and their settings, created (idempotently) by the worker at start."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.client.kafka import confluent_config
from streams.settings import Settings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: dict[str, str]


def control_topic(settings: Settings) -> str:
    """Internal topic of idle-flush requests, co-partitioned with the audio topic."""
    return f"{settings.app_id}-control"


def project_topics(settings: Settings) -> list[TopicSpec]:
    """Audio keeps 7 days for replay; transcripts 30; interim transcripts 1 hour (their finals
    replace them within seconds); translations 30 days, interim ones 1 hour; synthesized speech 1 day; dead letters 14 for inspection. Call settings
    are compacted (the latest record per call is kept) and co-partitioned with the audio, so a
    call's settings reach the worker that reads its audio; a call's settings go 7 days after
    its tombstone, or CALLSTT_CALL_SETTINGS_TTL_S (30 days) after the last write (compact,delete),
when the workers forget them too."""
    partitions, replication = settings.topic_partitions, settings.topic_replication
    min_isr = str(min(2, replication))
    return [
        TopicSpec(settings.audio_topic, partitions, replication,
                  {"retention.ms": str(7 * DAY_MS), "min.insync.replicas": min_isr}),
        TopicSpec(control_topic(settings), partitions, replication,
                  {"retention.ms": str(DAY_MS), "min.insync.replicas": min_isr}),
        TopicSpec(settings.call_settings_topic, partitions, replication,
                  {"cleanup.policy": "compact,delete", "retention.ms": str(int(settings.call_settings_ttl_s * 1000)),
                   "delete.retention.ms": str(7 * DAY_MS), "min.insync.replicas": min_isr}),
        TopicSpec(settings.transcript_topic, partitions, replication,
                  {"retention.ms": str(30 * DAY_MS), "min.insync.replicas": min_isr}),
        TopicSpec(settings.partial_topic, partitions, replication,  # interims: a live feature, replaced in seconds
                  {"retention.ms": str(3600 * 1000), "min.insync.replicas": "1"}),
        TopicSpec(settings.translation_topic, partitions, replication,
                  {"retention.ms": str(30 * DAY_MS), "min.insync.replicas": min_isr}),
        TopicSpec(settings.partial_translation_topic, partitions, replication,  # like the interims they translate
                  {"retention.ms": str(3600 * 1000), "min.insync.replicas": "1"}),
        TopicSpec(settings.speech_topic, partitions, replication,  # played back at once: a day is plenty
                  {"retention.ms": str(DAY_MS), "min.insync.replicas": min_isr}),
        TopicSpec(settings.dead_letter_topic, 1, replication,
                  {"retention.ms": str(14 * DAY_MS), "min.insync.replicas": min_isr}),
    ]


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create the project's topics that do not exist yet; returns the names created."""
    return create_topics(settings, project_topics(settings), timeout)


def create_topics(settings: Settings, specs: list[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create those of `specs` that do not exist yet; returns the names created."""
    if not specs:
        return []
    admin = AdminClient(confluent_config(settings))  # kept until the futures are done (else they fail)
    futures = admin.create_topics(
        [NewTopic(spec.name, num_partitions=spec.partitions, replication_factor=spec.replication,
                  config=spec.config) for spec in specs],
        operation_timeout=timeout, request_timeout=timeout)
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created
