"""Shared fixtures: the real Kafka broker (started once per test session) and the packaged model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from kafka_local import LocalKafka  # noqa: E402  (scripts/ is not a package)

# Tests use their own ports and data folder, so a developer's running demo broker is left alone.
TEST_KAFKA_PORT = 29092


@pytest.fixture(scope="session")
def kafka_cluster() -> LocalKafka:
    """A fresh single-node KRaft broker on 127.0.0.1, wiped and started once per session."""
    cluster = LocalKafka(name="test", brokers=1, port=TEST_KAFKA_PORT)
    cluster.wipe()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_cluster: LocalKafka) -> str:
    return kafka_cluster.bootstrap_servers


@pytest.fixture(scope="session")
def base_model():
    """The packaged multilingual Whisper base model, loaded once through the model store."""
    from models.faster_whisper_backend import FasterWhisperBackend
    from models.store import resolve_model

    return FasterWhisperBackend(resolve_model("base"), "base", compute_type="int8", cpu_threads=2)
