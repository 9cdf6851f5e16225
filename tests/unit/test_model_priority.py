"""The model's threads run below the worker's event loop (streams/lifecycle.py lower_priority):
the thread that loads the model, and every thread it starts (CTranslate2's), lose CPU to the
reading, VAD and endpointing first. Linux nice values, read back from the kernel."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from callstt.streams.lifecycle import lower_priority


def nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def child_thread_nice() -> int:
    """The nice value of a thread started from the calling thread (as a library starts its pool)."""
    seen: list[int] = []
    child = threading.Thread(target=lambda: seen.append(nice_of_this_thread()))
    child.start()
    child.join()
    return seen[0]


def test_model_threads_and_the_threads_they_start_run_below_the_event_loop():
    base = nice_of_this_thread()
    with ThreadPoolExecutor(1, initializer=lower_priority(5)) as model_thread:
        assert model_thread.submit(nice_of_this_thread).result() == min(base + 5, 19)
        assert model_thread.submit(child_thread_nice).result() == min(base + 5, 19)
    assert nice_of_this_thread() == base  # the caller (the event loop) keeps its priority
    with ThreadPoolExecutor(1, initializer=lower_priority(0)) as same:
        assert same.submit(nice_of_this_thread).result() == base
