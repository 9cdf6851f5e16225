"""A worker that crashed rebuilds its tables from the changelog; one that stopped cleanly keeps them."""

from __future__ import annotations

from streams.settings import Settings
from streams.worker.runner import CLEAN_SHUTDOWN_MARKER, prepare_local_state


def test_local_tables_are_dropped_after_a_crash_and_kept_after_a_clean_stop(tmp_path):
    settings = Settings.from_env({"CALLSTT_DATA_DIR": str(tmp_path)})
    tables = tmp_path / "v1" / "tables"
    (tables / "streams-0.db").mkdir(parents=True)

    (tmp_path / CLEAN_SHUTDOWN_MARKER).touch()  # the last run stopped cleanly
    prepare_local_state(settings, tables)
    assert (tables / "streams-0.db").exists() and not (tmp_path / CLEAN_SHUTDOWN_MARKER).exists()

    prepare_local_state(settings, tables)  # no marker: the last run was killed
    assert not tables.exists()
    prepare_local_state(settings, tables)  # a first start: nothing to drop
