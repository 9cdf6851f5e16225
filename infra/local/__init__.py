"""Local infrastructure without Docker, run from Maven Central artifacts on loopback:

* `infra.local.kafka`: `LocalKafka`, a real Apache Kafka broker or N-broker KRaft cluster;
* `infra.local.registry`: `LocalSchemaRegistry`, a real Apicurio Schema Registry.

Their command lines are scripts/kafka_local.py and scripts/schema_registry.py.
"""

from __future__ import annotations

import os
from pathlib import Path


def running_pid(pid_file: Path) -> int | None:
    """The pid a local JVM wrote to `pid_file`, if that process still runs (stale pid files and
    zombie children, which still answer kill(0), count as gone)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    try:
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return None
    except (FileNotFoundError, IndexError):
        return None
    return pid
