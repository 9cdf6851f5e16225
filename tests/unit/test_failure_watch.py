"""When a failing process stops looking healthy (streams/core/retry.py FailureWatch), which
failures count as permanent (streams/lifecycle.py) and the start-up check of co-partitioning
(streams/client/topics.py): pure logic, a clock of our own."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError
from faust.exceptions import PartitionsMismatch, ProducerSendError

from callstt.schemas.codec import EncodeError
from callstt.streams.client.topics import TopicLayoutError, check_copartitioned
from callstt.streams.core import retry
from callstt.streams.core.retry import FailureWatch
from callstt.streams.lifecycle import failure_watch, is_permanent, what_was_denied
from callstt.streams.settings import Settings


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def watch_with(clock: Clock) -> FailureWatch:
    return FailureWatch(stall_after_s=120, exit_after_s=300, is_permanent=is_permanent, clock=clock)


def test_a_passing_failure_stalls_only_when_it_lasts_and_a_success_clears_it():
    clock = Clock()
    watch = watch_with(clock)
    watch.failed(TimeoutError("broker slow"))
    clock.now += 119
    watch.failed(ConnectionError("broker away"))
    assert watch.stalled() is None and not watch.should_exit()
    clock.now += 2
    stall = watch.stalled()
    assert stall is not None and "failing for 121 s" in stall.reason and "ConnectionError: broker away" in stall.reason
    clock.now += 298
    assert not watch.should_exit() and watch.stalled_for_s() == pytest.approx(299)
    clock.now += 1
    assert watch.should_exit()
    watch.succeeded()
    assert watch.stalled() is None and watch.stalled_for_s() == 0 and not watch.should_exit()


def test_a_permanent_failure_stalls_at_once_and_exits_after_the_bound():
    clock = Clock()
    watch = watch_with(clock)
    watch.failed(PartitionsMismatch("source has 6 partitions, changelog 0"))
    assert "retrying cannot mend" in watch.stalled().reason and "PartitionsMismatch" in watch.stalled().reason
    clock.now += 299
    watch.failed(PartitionsMismatch("again"))  # retried meanwhile: the stall keeps its start
    assert not watch.should_exit()
    clock.now += 1
    assert watch.should_exit()


def test_a_condition_from_outside_the_work_stalls_until_it_ends():
    clock = Clock()
    watch = watch_with(clock)
    watch.condition("topics", "topics deleted while the worker ran: callstt.audio")
    assert watch.stalled().reason == "topics deleted while the worker ran: callstt.audio"
    watch.succeeded()  # work that succeeds does not clear what the broker shows
    assert watch.stalled() is not None
    watch.condition("topics", None)
    assert watch.stalled() is None


@pytest.mark.parametrize("error, permanent", [
    (PartitionsMismatch("x"), True), (EncodeError("x"), True), (PermissionError("ro"), True),
    (type("TopicAuthorizationFailedError", (Exception,), {})(), True),
    (TimeoutError("x"), False), (ConnectionError("x"), False), (RuntimeError("leader moved"), False)])
def test_what_counts_as_permanent(error, permanent):
    assert is_permanent(error) is permanent


def test_the_retry_loop_tells_the_watch_each_failure_and_the_success(monkeypatch):
    monkeypatch.setattr(retry, "FIRST_DELAY_S", 0.001)
    watch = watch_with(Clock())
    outcomes = iter([PartitionsMismatch("x"), None])
    seen = []

    async def attempt():
        error = next(outcomes)
        if error is not None:
            raise error

    def on_failure(error, delay):
        seen.append(watch.stalled() is not None)

    asyncio.run(retry.until_done(attempt, on_failure, watch))
    assert seen == [True] and watch.stalled() is None


def test_copartitioning_is_checked_with_one_line_naming_every_count():
    check_copartitioned({"callstt.audio": 6, "callstt-streams-changelog": 6}, expected=6)
    with pytest.raises(TopicLayoutError) as refused:
        check_copartitioned({"callstt.audio": 12, "callstt-control": 6, "callstt-streams-changelog": 6}, expected=6)
    message = str(refused.value)
    assert "\n" not in message and "callstt.audio has 12" in message and "callstt-control has 6" in message
    assert "CALLSTT_TOPIC_PARTITIONS is 6" in message


def test_an_attempt_that_never_ends_stalls_too():
    clock = Clock()
    watch = watch_with(clock)
    watch.attempting()
    clock.now += 119
    assert watch.stalled() is None
    clock.now += 1
    assert "one attempt running for 120 s" in watch.stalled().reason
    clock.now += 300
    assert watch.should_exit()
    watch.succeeded()
    assert watch.stalled() is None


def test_the_broker_probe_names_topics_deleted_or_changed_under_the_worker():
    from callstt.streams.worker.broker_probe import topics_wrong

    required = ["w.audio", "w.transcripts", "w-streams-changelog"]
    assert topics_wrong(required, {"w.audio": 3, "w.transcripts": 3, "w-streams-changelog": 3, "other": 1}, 3) is None
    assert topics_wrong(required, {"w.audio": 3, "w-streams-changelog": 3}, 3) == \
        "topics deleted while the worker ran: w.transcripts"
    changed = topics_wrong(required, {"w.audio": 3, "w.transcripts": 1, "w-streams-changelog": 3}, 3)
    assert "w.transcripts has 1" in changed and "not 3" in changed


def test_a_write_the_acls_deny_stalls_at_once_naming_principal_topic_and_operation():
    """Faust wraps the client's TopicAuthorizationFailedError in a ProducerSendError (seen in the
    ACL test: the translator without Write on translations said ok while it retried)."""
    try:
        try:
            raise TopicAuthorizationFailedError("callstt.translations")
        except TopicAuthorizationFailedError as error:
            raise ProducerSendError(f"Error while sending: {error!r}") from error
    except ProducerSendError as wrapped:
        send_failed = wrapped
    watch = failure_watch(Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="callstt-translator",
                                   kafka_sasl_password="secret"))
    watch.failed(send_failed)
    reason = watch.stalled().reason
    assert "User:callstt-translator may not Write" in reason and "callstt.translations" in reason, reason


def test_what_was_denied_says_only_what_the_error_chain_tells():
    """A read the ACLs refuse is not called a write, a refused group is named as a group, and
    errors with no refusal in them are described as they are."""
    assert what_was_denied(TopicAuthorizationFailedError("callstt.audio")) == "Read or Describe a topic it needs"
    assert what_was_denied(GroupAuthorizationFailedError("callstt")) == "Read its consumer group"
    assert what_was_denied(ConnectionError("broker gone")) is None
