"""Retrying a unit of work until it is done, with backoff: the one retry loop of the agents, and
the watch that keeps a lasting failure from being retried in silence.

A record (or a batch of them) that fails is never skipped, since at-least-once means its output
is repeated (with the same ids), never lost; the broker hiccup behind most failures passes, and
the backoff keeps a lasting one from spinning. A failure that does not pass (a permanent cause,
or a passing one that lasts) must not look healthy: `FailureWatch` says when the process is
*stalled* (its /health answers 503) and when it should exit so its supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0


@dataclass(frozen=True)
class Stall:
    """Why the process is stalled and since when (the watch's clock)."""

    reason: str
    since: float


class FailureWatch:
    """Consecutive failures of the process's unit of work, told apart by `is_permanent(error)`.

    Stalled: the last failure was permanent (a retry cannot help: a partition mismatch, a schema
    it cannot write), or failures have gone on for `stall_after_s` without a success (a passing
    cause that lasts: the broker gone for minutes), or one attempt has run that long without an
    end (a send the client retries inside itself forever, to a partition that is gone). Stalled
    for `exit_after_s` more: time to exit. A success clears it all."""

    def __init__(self, stall_after_s: float, exit_after_s: float, is_permanent: Callable[[Exception], bool],
                 clock: Callable[[], float] = time.monotonic,
                 describe: Callable[[Exception], str] = lambda error: f"{type(error).__name__}: {error}") -> None:
        self.stall_after_s, self.exit_after_s = stall_after_s, exit_after_s
        self.is_permanent, self.clock, self.describe = is_permanent, clock, describe
        self.failing_since: float | None = None
        self.last_error = ""
        self.permanent_since: float | None = None
        self.conditions: dict[str, Stall] = {}  # seen from outside the work: a topic deleted
        self.attempt_since: float | None = None  # the attempt under way

    def condition(self, key: str, reason: str | None) -> None:
        """A permanent condition seen from outside the unit of work (`reason`), or its end (None):
        a topic the process needs deleted under it stalls it even when no record arrives to fail."""
        if reason is None:
            self.conditions.pop(key, None)
        elif key not in self.conditions:
            self.conditions[key] = Stall(reason, self.clock())

    def attempting(self) -> None:
        self.attempt_since = self.clock()

    def failed(self, error: Exception) -> None:
        now = self.clock()
        self.attempt_since = None
        if self.failing_since is None:
            self.failing_since = now
        self.last_error = self.describe(error)  # what /health shows
        if self.is_permanent(error):
            self.permanent_since = self.permanent_since if self.permanent_since is not None else now
        else:
            self.permanent_since = None

    def succeeded(self) -> None:
        self.failing_since = self.permanent_since = self.attempt_since = None
        self.last_error = ""

    def stalled(self) -> Stall | None:
        if self.conditions:
            return min(self.conditions.values(), key=lambda stall: stall.since)
        if self.attempt_since is not None and self.clock() - self.attempt_since >= self.stall_after_s:
            return Stall(f"one attempt running for {self.clock() - self.attempt_since:.0f} s without an end"
                         + (f" (failing before: {self.last_error})" if self.last_error else ""),
                         self.attempt_since + self.stall_after_s)
        if self.failing_since is None:
            return None
        if self.permanent_since is not None:
            return Stall(f"a failure retrying cannot mend ({self.last_error})", self.permanent_since)
        if self.clock() - self.failing_since >= self.stall_after_s:
            return Stall(f"failing for {self.clock() - self.failing_since:.0f} s (last: {self.last_error})",
                         self.failing_since + self.stall_after_s)
        return None

    def stalled_for_s(self) -> float:
        stall = self.stalled()
        return 0.0 if stall is None else max(self.clock() - stall.since, 0.0)

    def should_exit(self) -> bool:
        return self.stalled() is not None and self.stalled_for_s() >= self.exit_after_s


async def until_done(attempt: Callable[[], Awaitable[None]], on_failure: Callable[[Exception, float], None],
                     watch: FailureWatch | None = None) -> None:
    """`await attempt()`, again after each failure (0.5 s, doubling up to 30 s), until it succeeds.
    `on_failure(error, delay_s)` is called inside the failure's `except` (so `log.exception` shows
    its traceback) before each wait; `watch` hears of every failure and of the success. A
    cancellation is passed on, never retried."""
    delay = FIRST_DELAY_S
    while True:
        if watch is not None:
            watch.attempting()
        try:
            await attempt()
        except asyncio.CancelledError:  # a rebalance or a shutdown: no attempt under way any more
            if watch is not None:
                watch.attempt_since = None
            raise
        except Exception as error:
            if watch is not None:
                watch.failed(error)
            on_failure(error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)
        else:
            if watch is not None:
                watch.succeeded()
            return
