"""Whether the worker can reach the broker, for /health, /metrics and alerts.

A network partition or a dead broker is invisible in the worker's other figures: consumer lag
is computed from the last highwater the broker sent, so it stays flat, and the consumer's and
producer's clients retry quietly. So every few seconds the worker asks the broker for its topic
metadata, over the same listener, network path and credentials as its other clients, and keeps
when the broker last answered. /health then says "broker_unreachable" (still 200: restarting a
worker would not bring the network back; its records wait in Kafka, nothing is lost).

The same answer lists the broker's topics: one the worker needs that is gone (deleted under it),
or back with another partition count (made again by auto-creation), stalls the worker
(streams/lifecycle.py) even when no record arrives to fail on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer

from callstt.streams.client.kafka import aiokafka_config
from callstt.streams.core.retry import FailureWatch
from callstt.streams.settings import Settings
from callstt.streams.worker.faust_compat import topic_partitions

log = logging.getLogger("callstt.worker")

PROBE_EVERY_S = 5.0
# No answer for this long (three probes): unreachable.
UNREACHABLE_AFTER_S = 15.0


class BrokerProbe:
    def __init__(self, settings: Settings, required_topics: Iterable[str] = (), watch: FailureWatch | None = None) -> None:
        self.settings = settings
        self.required_topics = sorted(required_topics)  # each with CALLSTT_TOPIC_PARTITIONS partitions
        self.watch = watch
        self.last_reply = time.monotonic()  # the worker reached the broker to start at all
        self._client = None  # an aiokafka consumer without a group, used for metadata only
        self._client_started = False
        self._said_unreachable = False

    def reply_age_s(self) -> float:
        return time.monotonic() - self.last_reply

    @property
    def reachable(self) -> bool:
        return self.reply_age_s() < UNREACHABLE_AFTER_S

    async def run(self) -> None:
        """Probe forever (a task of the worker's app)."""
        self._client = AIOKafkaConsumer(**aiokafka_config(self.settings), enable_auto_commit=False,
                                        request_timeout_ms=int(PROBE_EVERY_S * 1000))
        try:
            while True:
                await self.probe()
                await asyncio.sleep(PROBE_EVERY_S)
        finally:
            await self._client.stop()

    async def probe(self) -> None:
        """One metadata request; keeps the time of the answer, logs when the broker goes and comes back."""
        try:
            await asyncio.wait_for(self._ask(), timeout=PROBE_EVERY_S)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not self.reachable and not self._said_unreachable:
                self._said_unreachable = True
                log.warning("no answer from the broker for %.0f s (%s: %s); records wait in Kafka, nothing is lost",
                            self.reply_age_s(), type(error).__name__, error)
            return
        if self._said_unreachable:
            self._said_unreachable = False
            log.warning("the broker answers again after %.0f s", self.reply_age_s())
        self.last_reply = time.monotonic()

    async def _ask(self) -> None:
        if not self._client_started:
            await self._client.start()  # bootstraps: a metadata request
            self._client_started = True
        present = await topic_partitions(self._client)  # a metadata request to the broker every time
        if self.watch is not None:
            self.watch.condition("topics", topics_wrong(self.required_topics, present, self.settings.topic_partitions))


def topics_wrong(required: list[str], present: dict[str, int], expected: int) -> str | None:
    """What is wrong with the `required` topics, given the broker's (topic -> partitions); None: nothing."""
    gone = [name for name in required if name not in present]
    if gone:
        return f"topics deleted while the worker ran: {', '.join(gone)}"
    changed = [f"{name} has {present[name]}" for name in required if present[name] != expected]
    if changed:
        return (f"topics changed while the worker ran: {', '.join(changed)} partitions, not {expected} "
                "(deleted and made again?)")
    return None
