"""The tests' and the bench's local ports, and what a local broker that dies at start-up reports."""
from __future__ import annotations

import socket
import uuid
from pathlib import Path

from callstt.infra.local.kafka import LocalKafka, Node
from callstt.infra.local.ports import ephemeral_start, free_ports


def test_free_ports_are_consecutive_bindable_and_below_the_ephemeral_range():
    for count in (1, 2, 6):
        port = free_ports(count)
        assert port + count - 1 < ephemeral_start()  # no outgoing connection can take them meanwhile
        for offset in range(count):
            with socket.socket() as listener:
                listener.bind(("127.0.0.1", port + offset))


def test_a_node_that_died_at_start_up_reports_its_first_error_before_the_shutdown_lines(tmp_path: Path):
    cluster = LocalKafka(name=f"unit-{uuid.uuid4().hex[:8]}")
    node = Node(1, 1, 2, tmp_path)
    node.logs_dir.mkdir(parents=True)
    shutdown = [f"[2026-12-07 05:13:10,{i:03d}] INFO shutting down part {i} (kafka.server)" for i in range(60)]
    bind_error = ("[2026-12-07 05:13:09,001] ERROR [KafkaRaftServer nodeId=1] Fatal error during broker startup. "
                  "org.apache.kafka.common.KafkaException: Socket server failed to bind to 127.0.0.1:9092: "
                  "Address already in use.")
    (node.logs_dir / "server.log").write_text("\n".join(["INFO starting", bind_error, *shutdown]) + "\n")
    report = cluster.log_tail(node)
    assert "Address already in use" in report.splitlines()[1]  # first, not lost above 40 shutdown lines
    assert report.splitlines()[-1] == shutdown[-1]

    (node.logs_dir / "server.log").write_text("\n".join(shutdown[:3]) + "\n")
    assert cluster.log_tail(node).splitlines() == shutdown[:3]  # no error: the tail alone, as before
