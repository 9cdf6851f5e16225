"""Retrying a unit of work until it is done, with backoff: the one retry loop of the agents.

A record (or a batch of them) that fails is never skipped, since at-least-once means its output
is repeated (with the same ids), never lost; the broker hiccup or missing topic behind most
failures passes, and the backoff keeps a lasting one from spinning.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0


async def until_done(attempt: Callable[[], Awaitable[None]], on_failure: Callable[[Exception, float], None]) -> None:
    """`await attempt()`, again after each failure (0.5 s, doubling up to 30 s), until it succeeds.
    `on_failure(error, delay_s)` is called inside the failure's `except` (so `log.exception` shows
    its traceback) before each wait. A cancellation is passed on, never retried."""
    delay = FIRST_DELAY_S
    while True:
        try:
            await attempt()
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:
            on_failure(error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)
