"""Shared fixtures: the real Kafka broker (started once per test session), the real schema registry
(started the first time a test asks for it) and the packaged model."""

from __future__ import annotations

import pytest

from callstt.infra.local.kafka import LocalKafka
from callstt.infra.local.ports import free_ports


def free_port_pair(count: int = 2) -> int:
    """A port p with p..p+count-1 free: by default the client and controller listeners of a
    one-node broker; 4 with its SASL (p+2) and TLS (p+3) listeners too."""
    return free_ports(count)


@pytest.fixture(scope="session")
def kafka_cluster() -> LocalKafka:
    """A fresh single-node KRaft broker on 127.0.0.1, started once per test session.

    Its own free ports and data folder (.local/kafka/test-<pid>/), so a developer's demo
    broker and other test sessions are left alone; wiped at the end."""
    import os

    cluster = LocalKafka(name=f"test-{os.getpid()}", brokers=1, port=free_port_pair())
    cluster.start()
    yield cluster
    cluster.wipe()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_cluster: LocalKafka) -> str:
    return kafka_cluster.bootstrap_servers


@pytest.fixture(scope="session")
def base_model():
    """The packaged multilingual Whisper base model, loaded once through the model store."""
    from callstt.models.asr.faster_whisper_backend import FasterWhisperBackend
    from callstt.models.asr.store import resolve_model

    return FasterWhisperBackend(resolve_model("base"), "base", compute_type="int8", cpu_threads=2)


# The registry's own port, so a developer's registry on 8081 is left alone.
TEST_REGISTRY_PORT = 28081


@pytest.fixture(scope="session")
def schema_registry_url() -> str:
    """A fresh Apicurio Registry (in-memory storage, so empty) on 127.0.0.1, once per session."""
    from callstt.infra.local.registry import LocalSchemaRegistry

    registry = LocalSchemaRegistry(TEST_REGISTRY_PORT)
    registry.stop()
    url = registry.start()
    yield url
    registry.stop()
