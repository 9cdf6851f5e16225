"""Free local ports for the brokers and web servers that the tests and the bench start.

Picked below the kernel's ephemeral range: a port checked free there can still be taken, before
the listener binds it, as the local end of any outgoing connection (a Kafka client's, a test's),
and a broker that cannot bind its port exits during start-up. Below that range only another
listener can take it.
"""

from __future__ import annotations

import random
import socket
from contextlib import ExitStack
from pathlib import Path

LOWEST = 20000  # above the well-known and most registered service ports
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
EPHEMERAL_START_DEFAULT = 32768  # Linux's default when the range cannot be read


def ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return EPHEMERAL_START_DEFAULT


def free_ports(count: int = 1, attempts: int = 200) -> int:
    """A port p with p..p+count-1 free on 127.0.0.1, all below the ephemeral range."""
    highest = max(ephemeral_start(), LOWEST + 1000) - count
    for _ in range(attempts):
        port = random.randint(LOWEST, highest)
        try:
            with ExitStack() as stack:
                for offset in range(count):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no {count} free consecutive ports in {LOWEST}-{highest + count - 1}")
