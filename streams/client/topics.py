"""The project's topics and their settings, created (idempotently) by every process at start, and
the start-up check that they are there, as the process needs them, before Faust starts.

`prepare_topics` is what the worker, the translator and the speaker run first: create what is
missing (the project's topics and the process's own table changelogs, one creation path), wait
until the broker's metadata shows each with a leader for every partition, and refuse to start,
with one line naming the topics and their counts, when the topics a table joins are not
co-partitioned. Faust would otherwise create a changelog itself moments after a broker came up,
keep the 0 partitions its first metadata showed, and fail every table write after that
(PartitionsMismatch) while its /health said ok: the first run of scripts/demo on a fresh broker.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from callstt.schemas.errors import CallsttError
from callstt.streams.client.kafka import confluent_config, principal
from callstt.streams.settings import Settings


class TopicsNotReady(CallsttError, RuntimeError):
    """At start, the broker did not answer, or a topic did not show its partitions, in time."""


class TopicLayoutError(CallsttError, RuntimeError):
    """Topics that must be co-partitioned are not (someone made one with another partition count)."""

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: dict[str, str]
    about: str = ""  # what it holds and why it is kept so long (infra/k8s/kafka-topics.yaml's comment)


WORKER_TABLE = "streams"  # the worker's table of open streams (streams/worker/app.py)


def worker_changelog_topic(settings: Settings) -> str:
    """The worker's table changelog (Faust names it <app_id>-<table>-changelog)."""
    return f"{settings.app_id}-{WORKER_TABLE}-changelog"


def control_topic(settings: Settings) -> str:
    """Internal topic of idle-flush requests, co-partitioned with the audio topic."""
    return f"{settings.app_id}-control"


def project_topics(settings: Settings) -> list[TopicSpec]:
    """Audio keeps 7 days for replay; transcripts 30; interim transcripts 1 hour (their finals
    replace them within seconds); translations 30 days, interim ones 1 hour; synthesized speech 1 day;
the gateway's stream marks 1 day, compacted; dead letters 14 for inspection. Call settings
    are compacted (the latest record per call is kept) and co-partitioned with the audio, so a
    call's settings reach the worker that reads its audio; a call's settings go 7 days after
    its tombstone, or CALLSTT_CALL_SETTINGS_TTL_S (30 days) after the last write (compact,delete),
when the workers forget them too."""
    partitions, replication = settings.topic_partitions, settings.topic_replication
    min_isr = str(min(2, replication))
    return [
        TopicSpec(settings.audio_topic, partitions, replication,
                  {"retention.ms": str(7 * DAY_MS), "min.insync.replicas": min_isr},
                  "AudioChunk events from the call platforms, key = call ID; 7 days for `callstt replay`."),
        TopicSpec(control_topic(settings), partitions, replication,
                  {"retention.ms": str(DAY_MS), "min.insync.replicas": min_isr},
                  "Internal: the workers' idle-flush requests (control_topic), co-partitioned with the audio."),
        TopicSpec(settings.call_settings_topic, partitions, replication,
                  {"cleanup.policy": "compact,delete", "retention.ms": str(int(settings.call_settings_ttl_s * 1000)),
                   "delete.retention.ms": str(7 * DAY_MS), "min.insync.replicas": min_isr},
                  "Per-call options (CallSettings), compacted, co-partitioned with the audio; kept "
                  "CALLSTT_CALL_SETTINGS_TTL_S (30 days) after the last write."),
        TopicSpec(settings.transcript_topic, partitions, replication,
                  {"retention.ms": str(30 * DAY_MS), "min.insync.replicas": min_isr},
                  "Final transcripts (the worker's output), 30 days."),
        TopicSpec(settings.partial_topic, partitions, replication,
                  {"retention.ms": str(3600 * 1000), "min.insync.replicas": "1"},
                  "Interim transcripts: a live feature, replaced within seconds; min ISR 1."),
        TopicSpec(settings.translation_topic, partitions, replication,
                  {"retention.ms": str(30 * DAY_MS), "min.insync.replicas": min_isr},
                  "Translation events (the translator's output), 30 days."),
        TopicSpec(settings.partial_translation_topic, partitions, replication,
                  {"retention.ms": str(3600 * 1000), "min.insync.replicas": "1"},
                  "Interim translations (the stable words of interims), like the interims they translate; min ISR 1."),
        TopicSpec(settings.speech_topic, partitions, replication,
                  {"retention.ms": str(DAY_MS), "min.insync.replicas": min_isr},
                  "Synthesized speech of the translated legs (16 kHz PCM AudioChunks), played at once: 1 day."),
        TopicSpec(settings.gateway_session_topic, partitions, replication,
                  {"cleanup.policy": "compact,delete", "retention.ms": str(DAY_MS),
                   "segment.ms": str(3600 * 1000), "min.insync.replicas": min_isr},
                  "Where each gateway stream stands (StreamMark JSON, key = [call ID, stream ID]), compacted; "
                  "a day, longer than a stream outlives its last chunk (CALLSTT_STREAM_TTL_S)."),
        TopicSpec(settings.dead_letter_topic, 1, replication,
                  {"retention.ms": str(14 * DAY_MS), "min.insync.replicas": min_isr},
                  "Rejected input records with their reason in a header, 14 days; one partition."),
    ]


def admin_config(settings: Settings) -> dict[str, Any]:
    """The admin client's settings: librdkafka's own log lines off (its failures come back as
    exceptions, which the caller words as one line; a broker absent at start would otherwise
    print a connection error to stderr every second)."""
    return confluent_config(settings, log_level=0)


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create the project's topics that do not exist yet; returns the names created."""
    return create_topics(settings, project_topics(settings), timeout)


def create_topics(settings: Settings, specs: list[TopicSpec], timeout: float = 30.0) -> list[str]:
    """Create those of `specs` that do not exist yet; returns the names created.

    A creation that failed on the way (the connection it went out on dropped: a fresh client
    retires its bootstrap connection once it has learned the brokers, and a request in flight on
    it fails with _DESTROY_BROKER; or a broker restarting) is sent again until `timeout`; any
    other refusal is raised."""
    if not specs:
        return []
    admin = AdminClient(admin_config(settings))  # kept until the futures are done (else they fail)
    deadline = time.monotonic() + timeout
    pending = {spec.name: spec for spec in specs}
    created: list[str] = []
    while pending:
        left = max(1.0, deadline - time.monotonic())
        futures = admin.create_topics(
            [NewTopic(spec.name, num_partitions=spec.partitions, replication_factor=spec.replication,
                      config=spec.config) for spec in pending.values()],
            operation_timeout=left, request_timeout=left)
        for name, future in futures.items():
            try:
                future.result(timeout=left)
                created.append(name)
            except KafkaException as error:
                if error.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    pass
                elif _lost_on_the_way(error.args[0]) and time.monotonic() < deadline:
                    continue
                else:
                    raise
            del pending[name]
        if pending:
            time.sleep(0.5)
    return created


def _lost_on_the_way(error: KafkaError) -> bool:
    """The request never got an answer (not a refusal), so sending it again is safe: creation is
    idempotent here, a topic that exists by then counts as done."""
    return error.retriable() or error.code() in (KafkaError._DESTROY_BROKER, KafkaError._TRANSPORT,
                                                 KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT)


def changelog_topics(settings: Settings, tables: Iterable[Any]) -> list[TopicSpec]:
    """The changelog topics of a Faust app's tables (`app.tables.values()`), as Faust would make
    them: compacted, one partition per partition of the topics the table follows."""
    replication = settings.topic_replication
    return [TopicSpec(table.changelog_topic_name, table.partitions or settings.topic_partitions, replication,
                      {"cleanup.policy": "compact", "min.insync.replicas": str(min(2, replication))})
            for table in tables]


def prepare_topics(settings: Settings, uses: list[str], changelogs: list[TopicSpec],
                   copartitioned: list[str]) -> list[str]:
    """Before a process's Faust app starts: check that those of `copartitioned` (the topics a
    table joins, its changelogs included) that exist have CALLSTT_TOPIC_PARTITIONS partitions
    (before creating anything, so a wrong count is mended by a setting, not by deleting topics);
    create, where missing, the project topics it `uses` and its `changelogs` (only those: with
    ACLs on, a process may neither see nor make the others, streams/client/acls.py); wait
    (CALLSTT_START_TIMEOUT_S) until the broker shows every one of them with a leader per
    partition; check again. Returns the names created; raises TopicsNotReady or
    TopicLayoutError (one line each, for the CLI)."""
    specs = [spec for spec in project_topics(settings) if spec.name in uses] + changelogs
    names = [spec.name for spec in specs]
    deadline = time.monotonic() + settings.start_timeout_s
    existing = partition_counts(settings, names, deadline)
    check_copartitioned({name: existing[name] for name in copartitioned if name in existing},
                        settings.topic_partitions)
    missing = [spec for spec in specs if spec.name not in existing]
    try:
        created = create_topics(settings, missing, timeout=settings.start_timeout_s)
    except KafkaException as error:
        raise TopicsNotReady(_creation_refused(settings, missing, error.args[0])) from error
    counts = wait_for_partitions(settings, names, deadline)
    check_copartitioned({name: counts[name] for name in copartitioned}, settings.topic_partitions)
    return created


def _creation_refused(settings: Settings, missing: list[TopicSpec], error: KafkaError) -> str:
    names = ", ".join(spec.name for spec in missing)
    if error.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED):
        who = principal(confluent_config(settings))
        return (f"{who} may not create the missing topics {names} (operation Create denied by the broker's ACLs); "
                f"create them as the admin role (`callstt topics create`), see `callstt acls`")
    return f"cannot create the topics {names} on {settings.kafka_bootstrap_servers}: {error.str()}"


def partition_counts(settings: Settings, names: list[str], deadline: float) -> dict[str, int]:
    """The partition count of each of `names` that exists (waiting for the broker to answer)."""
    admin = AdminClient(admin_config(settings))
    while True:
        try:
            topics = admin.list_topics(timeout=max(min(deadline - time.monotonic(), 5.0), 0.5)).topics
            return {name: len(topics[name].partitions) for name in names if name in topics and topics[name].partitions}
        except KafkaException as error:
            if time.monotonic() >= deadline:
                raise TopicsNotReady(f"no answer from the broker at {settings.kafka_bootstrap_servers} within "
                                     f"{settings.start_timeout_s:.0f} s (CALLSTT_START_TIMEOUT_S): "
                                     f"{error.args[0].str()}") from error
        time.sleep(0.5)


def wait_for_partitions(settings: Settings, names: list[str], deadline: float) -> dict[str, int]:
    """Each topic's partition count, once the broker's metadata shows every partition of every one
    of `names` with a leader (a topic created a moment ago may not show yet)."""
    admin = AdminClient(admin_config(settings))
    missing: dict[str, str] = {}
    while True:
        try:
            topics = admin.list_topics(timeout=max(min(deadline - time.monotonic(), 5.0), 0.5)).topics
        except KafkaException as error:
            missing = {"(broker)": f"no answer from {settings.kafka_bootstrap_servers} ({error.args[0].str()})"}
        else:
            missing = {name: topic_not_ready(topics.get(name)) for name in names}
            missing = {name: why for name, why in missing.items() if why}
            if not missing:
                return {name: len(topics[name].partitions) for name in names}
        if time.monotonic() >= deadline:
            detail = "; ".join(f"{name}: {why}" for name, why in sorted(missing.items()))
            raise TopicsNotReady(f"topics not ready after {settings.start_timeout_s:.0f} s "
                                 f"(CALLSTT_START_TIMEOUT_S): {detail}")
        time.sleep(0.5)


def topic_not_ready(metadata: Any) -> str:
    """Why a topic's metadata (confluent_kafka TopicMetadata, None when absent) is not ready; '' when it is."""
    if metadata is None:
        return "missing"
    if metadata.error is not None:
        return metadata.error.str()
    if not metadata.partitions:
        return "no partitions yet"
    leaderless = sorted(p.id for p in metadata.partitions.values() if p.leader < 0 or p.error is not None)
    return f"no leader yet for partitions {leaderless}" if leaderless else ""


def check_copartitioned(counts: dict[str, int], expected: int) -> None:
    """Raise TopicLayoutError when any of `counts` (topic -> partitions) is not `expected`."""
    wrong = {name: count for name, count in counts.items() if count != expected}
    if wrong:
        listed = ", ".join(f"{name} has {count}" for name, count in counts.items())
        raise TopicLayoutError(
            f"topics not co-partitioned: {listed} partitions, and CALLSTT_TOPIC_PARTITIONS is {expected}; a call's "
            "audio, settings and state must meet in one partition: set CALLSTT_TOPIC_PARTITIONS to the audio "
            "topic's count, or recreate the topics that differ (docs/faults.md)")
