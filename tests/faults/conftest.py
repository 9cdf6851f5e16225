"""Fault-suite fixtures: the 3-broker cluster factory.

Test modules use these as fixtures only (this file is imported by pytest, not by them).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from kafka_local import LocalKafka

# -- the 3-broker cluster -----------------------------------------------------------------------


@contextmanager
def _three_brokers(name: str, port: int) -> Iterator[LocalKafka]:
    cluster = LocalKafka(name=f"test-{name}-{os.getpid()}", brokers=3, port=port)
    cluster.wipe()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.wipe()


@pytest.fixture(scope="session")
def three_brokers():
    """`with three_brokers(name, port) as cluster:` a fresh 3-broker KRaft cluster (replication 3,
    min ISR 2) on 127.0.0.1, clients on port..port+2 and controllers on port+3..port+5, data in
    .local/kafka/test-NAME-<pid>/, wiped before and after. Modules wrap it in their own fixture."""
    return _three_brokers
