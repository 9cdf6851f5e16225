"""Before a process starts: a taken metrics port is refused in one line naming the setting, as a
taken web port is (the integration start-up test covers the web port through a real worker)."""
from __future__ import annotations

import socket

import pytest

from callstt.infra.local.ports import free_ports as free_port
from callstt.streams.lifecycle import StartError, check_local_resources


def test_a_taken_metrics_port_is_refused_naming_its_setting(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        check_local_resources(str(tmp_path), "127.0.0.1", free_port())  # no metrics port: nothing checked
        with pytest.raises(StartError) as refused:
            check_local_resources(str(tmp_path), "127.0.0.1", free_port(), metrics_port=taken)
    assert f"the metrics port 127.0.0.1:{taken} cannot be used" in str(refused.value)
    assert "CALLSTT_METRICS_PORT" in str(refused.value)
