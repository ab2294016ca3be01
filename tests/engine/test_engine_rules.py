"""The rules of the fallback engine (providers/fallback.py's docstring), one fast test each.

The engine is driven through its public entry points (``run``, ``open_stream``, ``restart_stream``)
with plans built from a scripted in-process adapter (CONVENTIONS.md, habit 11): each plan plays an
exact sequence of outcomes and delays, and records when it was called, whether it was cancelled and
whether its stream was closed. Delays are milliseconds; assertions compare times relatively.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from providers import exceptions as exc
from providers import fallback
from providers.breaker import breaker
from providers.fallback import Deadlines, Plan, Policy

LONG = 5.0  # seconds: a delay no test should ever wait out (a cancelled or cut-off step)


# ---- the scripted adapter -------------------------------------------------------------------------


@dataclass
class Step:
    """One call of a plan: wait ``after`` seconds, then stream ``chunks`` (each after its gap), then
    raise ``error`` if any, else return ``value`` (calls) or end the stream."""

    after: float = 0.0
    value: Any = "ok"
    error: BaseException | None = None
    chunks: list[tuple[float, Any]] = field(default_factory=list)


def ok(value: Any = "ok", after: float = 0.0) -> Step:
    return Step(after=after, value=value)


def fail(error: BaseException, after: float = 0.0) -> Step:
    return Step(after=after, error=error)


def stream(*chunks: tuple[float, Any], then: BaseException | None = None, after: float = 0.0) -> Step:
    return Step(after=after, chunks=list(chunks), error=then)


class Script:
    """A provider that plays its steps in order, one per call; a call past the last step fails the test."""

    def __init__(self, uid: str, *steps: Step, model: str = "m", attempt: float = LONG,
                 first_chunk: float | None = None, idle: float | None = None, hedge: Any = None,
                 map_error: Any = None) -> None:
        self.uid, self.model = uid, model
        self.steps = list(steps)
        self.deadlines = Deadlines(attempt=attempt, first_chunk=first_chunk, idle=idle)
        self.hedge = hedge
        self.map_error = map_error or (lambda error: None)
        self.calls: list[float] = []  # monotonic time of each call
        self.cancelled = 0
        self.closed = 0  # streams whose generator was closed (aclose, or cancelled) before their end
        self.finished = 0  # calls that ran their step to its end

    def _next(self) -> Step:
        self.calls.append(time.monotonic())
        assert self.steps, f"{self.uid} called more often than scripted ({len(self.calls)} calls)"
        return self.steps.pop(0)

    async def call(self) -> Any:
        step = self._next()
        try:
            await asyncio.sleep(step.after)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        if step.error is not None:
            raise step.error
        return step.value

    async def stream(self):
        step = self._next()
        done = False
        try:
            await asyncio.sleep(step.after)
            for gap, chunk in step.chunks:
                await asyncio.sleep(gap)
                yield chunk
            done = True
            self.finished += 1
            if step.error is not None:
                raise step.error
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            if not done:
                self.closed += 1

    def plan(self) -> Plan:
        return Plan(self.uid, self.model, self.deadlines, self.map_error, call=self.call, stream=self.stream,
                    hedge=self.hedge)


def plans(*scripts: Script) -> list[Plan]:
    return [s.plan() for s in scripts]


def statuses(attempts) -> list[tuple[str, str]]:
    return [(a.provider_uid, a.final_status) for a in attempts]


async def drain(committed: fallback.Committed) -> list[Any]:
    return [chunk async for chunk in committed]


def unavailable(retry_after: float | None = None, **kwargs) -> exc.Unavailable:
    return exc.Unavailable("upstream 503", upstream_status=503, retry_after=retry_after, **kwargs)


@pytest.fixture(autouse=True)
def engine_settings(settings):
    settings.REDIS_URL = ""
    settings.QALBY_BREAKER_THRESHOLD = 0  # the breaker tests turn it on
    settings.QALBY_RETRY_BACKOFF = 0.01
    settings.QALBY_MAX_RETRY_AFTER = 0.5
    return settings


# ---- retry: at most once on the same provider, only for short waits, 5xx, dropped connections ----


async def test_a_5xx_is_retried_once_on_the_same_provider_then_the_chain_moves_on():
    a = Script("a", fail(unavailable()), fail(unavailable()))
    b = Script("b", ok("from b"))
    outcome = await fallback.run(plans(a, b), Policy())
    assert outcome.result == "from b"
    assert len(a.calls) == 2
    assert outcome.attempts[0].retries == 1
    assert statuses(outcome.attempts) == [("a", "error"), ("b", "ok")]


async def test_a_retry_that_succeeds_answers_from_the_same_attempt():
    a = Script("a", fail(unavailable()), ok("second try"))
    outcome = await fallback.run(plans(a), Policy())
    assert outcome.result == "second try"
    assert len(outcome.attempts) == 1 and outcome.attempts[0].retries == 1


async def test_a_short_retry_after_on_a_429_is_waited_then_retried(settings):
    a = Script("a", fail(exc.RateLimited("slow down", upstream_status=429, retry_after=0.05)), ok("later"))
    outcome = await fallback.run(plans(a), Policy())
    assert outcome.result == "later"
    assert a.calls[1] - a.calls[0] >= 0.045  # the hint was honoured


async def test_a_429_without_a_hint_is_not_retried():
    a = Script("a", fail(exc.RateLimited("slow down", upstream_status=429)))
    b = Script("b", ok())
    outcome = await fallback.run(plans(a, b), Policy())
    assert len(a.calls) == 1
    assert statuses(outcome.attempts) == [("a", "error"), ("b", "ok")]


async def test_a_429_with_a_long_retry_after_moves_on_at_once(settings):
    settings.QALBY_MAX_RETRY_AFTER = 0.05
    a = Script("a", fail(exc.RateLimited("slow down", upstream_status=429, retry_after=3)))
    b = Script("b", ok())
    started = time.monotonic()
    await fallback.run(plans(a, b), Policy())
    assert len(a.calls) == 1
    assert b.calls[0] - started < 1.5  # did not sit out the long wait either


async def test_a_5xx_with_a_long_retry_after_moves_on_at_once(settings):
    settings.QALBY_MAX_RETRY_AFTER = 0.05
    a = Script("a", fail(unavailable(retry_after=3)))
    b = Script("b", ok())
    started = time.monotonic()
    outcome = await fallback.run(plans(a, b), Policy())
    assert len(a.calls) == 1
    assert outcome.attempts[0].retries == 0
    assert b.calls[0] - started < 1.5


async def test_the_backoff_is_a_floor_of_the_wait_before_a_5xx_retry(settings):
    settings.QALBY_RETRY_BACKOFF = 0.08
    a = Script("a", fail(unavailable(retry_after=0.001)), ok())
    await fallback.run(plans(a), Policy())
    assert a.calls[1] - a.calls[0] >= 0.075


async def test_a_5xx_retry_after_longer_than_the_backoff_is_honoured(settings):
    settings.QALBY_RETRY_BACKOFF = 0.001
    a = Script("a", fail(unavailable(retry_after=0.08)), ok())
    await fallback.run(plans(a), Policy())
    assert a.calls[1] - a.calls[0] >= 0.075


async def test_a_backoff_longer_than_the_max_retry_after_means_no_retry(settings):
    settings.QALBY_RETRY_BACKOFF = 0.3
    settings.QALBY_MAX_RETRY_AFTER = 0.1
    a = Script("a", fail(unavailable()))
    b = Script("b", ok())
    await fallback.run(plans(a, b), Policy())
    assert len(a.calls) == 1


async def test_no_retry_when_the_wait_is_at_least_the_remaining_budget(settings):
    settings.QALBY_MAX_RETRY_AFTER = 5.0
    a = Script("a", fail(unavailable(retry_after=3)), attempt=0.1)
    b = Script("b", ok())
    started = time.monotonic()
    outcome = await fallback.run(plans(a, b), Policy())
    assert len(a.calls) == 1
    assert outcome.attempts[0].retries == 0
    assert b.calls[0] - started < 1.5  # moved on at once instead of sleeping past its own deadline


async def test_no_retry_when_the_wait_exceeds_what_is_left_of_the_chain(settings):
    settings.QALBY_MAX_RETRY_AFTER = 1.0
    a = Script("a", fail(unavailable(retry_after=0.3)))
    with pytest.raises(exc.AllAttemptsFailed):
        await fallback.run(plans(a), Policy(overall=0.1))
    assert len(a.calls) == 1


@pytest.mark.parametrize("error", [
    exc.BadRequest("too long", upstream_status=400),
    exc.AuthFailed("bad key", upstream_status=401),
    exc.Timeout("slow"),
    exc.Unavailable("key cannot be decrypted", retryable=False),
], ids=["bad-request", "auth", "timeout", "non-retryable-unavailable"])
async def test_errors_that_are_not_retried_on_the_same_provider(error):
    a = Script("a", fail(error))
    b = Script("b", ok())
    outcome = await fallback.run(plans(a, b), Policy())
    assert len(a.calls) == 1
    assert outcome.attempts[0].retries == 0
    assert outcome.result == "ok"  # and the chain moved on


async def test_the_retry_runs_within_the_same_attempt_deadline():
    # The first try fails late; the retry hangs: it is cut at the attempt's deadline, not given a new one.
    a = Script("a", fail(unavailable(), after=1.0), ok(after=LONG), attempt=1.2)
    b = Script("b", ok("from b"))
    started = time.monotonic()
    outcome = await fallback.run(plans(a, b), Policy())
    assert outcome.result == "from b"
    assert outcome.attempts[0].error_type == "Timeout" and outcome.attempts[0].retries == 1
    assert b.calls[0] - started < 1.2 + 0.6  # a fresh deadline for the retry would reach 2.2


# ---- content policy ends the chain --------------------------------------------------------------


async def test_a_content_policy_refusal_ends_the_chain():
    a = Script("a", fail(exc.ContentPolicy("refused", upstream_status=400)))
    b = Script("b", ok())
    with pytest.raises(exc.AllAttemptsFailed) as failed:
        await fallback.run(plans(a, b), Policy())
    assert b.calls == []
    assert failed.value.error_type == "content_policy"


async def test_a_content_policy_refusal_falls_over_when_the_request_opts_in():
    a = Script("a", fail(exc.ContentPolicy("refused", upstream_status=400)))
    b = Script("b", ok("from b"))
    outcome = await fallback.run(plans(a, b), Policy(fall_over=frozenset({"content_policy"})))
    assert outcome.result == "from b"


# ---- unexpected adapter exceptions --------------------------------------------------------------


async def test_an_unexpected_adapter_exception_is_a_typed_failed_attempt_and_the_chain_moves_on():
    a = Script("a", fail(ZeroDivisionError("bug")))  # one step: a retry would fail the script
    b = Script("b", ok("from b"))
    outcome = await fallback.run(plans(a, b), Policy())
    assert outcome.result == "from b"
    first = outcome.attempts[0]
    assert (first.status, first.error_type) == ("error", "Unavailable")
    assert "ZeroDivisionError" in first.error


async def test_an_unexpected_exception_of_the_last_entry_is_all_attempts_failed_not_a_crash():
    a = Script("a", fail(KeyError("x")))
    with pytest.raises(exc.AllAttemptsFailed) as failed:
        await fallback.run(plans(a), Policy())
    assert failed.value.status == 502 and failed.value.error_type == "Unavailable"


async def test_an_unexpected_exception_in_a_parallel_race_does_not_end_it():
    a = Script("a", fail(RuntimeError("bug")))
    b = Script("b", ok("from b", after=0.05))
    outcome = await fallback.run(plans(a, b), Policy(strategy="parallel"))
    assert outcome.result == "from b"
    assert outcome.attempts[0].error_type == "Unavailable"


async def test_an_unexpected_exception_is_not_retried_nor_counted_by_the_breaker(settings):
    # A bug of ours would meet the same bug again, and says nothing of the provider's health.
    settings.QALBY_BREAKER_THRESHOLD = 1
    a = Script("a", fail(RuntimeError("bug")), fail(RuntimeError("bug")))
    b = Script("b", ok("b"), ok("b"))
    await fallback.run(plans(a, b), Policy())
    assert len(a.calls) == 1
    outcome = await fallback.run(plans(a, b), Policy())
    assert statuses(outcome.attempts) == [("a", "error"), ("b", "ok")]  # a was not skipped


async def test_an_sdk_error_goes_through_the_plans_map_error():
    mapped = exc.AuthFailed("the key was refused", upstream_status=401)
    a = Script("a", fail(ValueError("sdk says 401")), map_error=lambda error: mapped)
    b = Script("b", ok())
    outcome = await fallback.run(plans(a, b), Policy())
    assert outcome.attempts[0].error_type == "AuthFailed"
    assert (mapped.provider_uid, mapped.model) == ("a", "m")  # named after the plan that raised it


async def test_an_unexpected_exception_mid_stream_is_a_typed_stream_failure():
    a = Script("a", stream((0, "x"), then=RuntimeError("bug")))
    committed = await fallback.open_stream(plans(a), Policy())
    with pytest.raises(fallback.StreamFailed) as failed:
        await drain(committed)
    assert failed.value.error.kind == "Unavailable"
    assert committed.attempt.status == "error"


# ---- deadlines ----------------------------------------------------------------------------------


async def test_the_attempt_deadline_is_a_typed_timeout_and_the_chain_moves_on():
    a = Script("a", ok(after=LONG), attempt=0.05)
    b = Script("b", ok("from b"))
    outcome = await fallback.run(plans(a, b), Policy())
    assert outcome.result == "from b"
    assert (outcome.attempts[0].status, outcome.attempts[0].error_type) == ("timeout", "Timeout")
    assert a.cancelled == 1


async def test_the_chain_deadline_cuts_an_attempt_with_a_longer_deadline_of_its_own():
    a = Script("a", ok(after=LONG), attempt=LONG)
    with pytest.raises(exc.AllAttemptsFailed) as failed:
        await asyncio.wait_for(fallback.run(plans(a), Policy(overall=0.05)), 2)
    assert failed.value.status == 504


async def test_no_entry_starts_once_the_chain_deadline_has_passed():
    a = Script("a", ok(after=LONG), attempt=LONG)
    b = Script("b", ok())
    with pytest.raises(exc.AllAttemptsFailed) as failed:
        await asyncio.wait_for(fallback.run(plans(a, b), Policy(overall=0.05)), 2)
    assert b.calls == []
    assert [a.provider_uid for a in failed.value.attempts] == ["a"]


async def test_the_first_chunk_deadline_falls_over_silently():
    a = Script("a", stream((LONG, "late")), first_chunk=0.05)
    b = Script("b", stream((0, "b1"), (0, "b2")))
    committed = await fallback.open_stream(plans(a, b), Policy())
    assert await drain(committed) == ["b1", "b2"]
    assert statuses(committed.attempts) == [("a", "timeout"), ("b", "ok")]
    assert a.closed == 1


async def test_the_idle_deadline_breaks_a_committed_stream():
    a = Script("a", stream((0, "a1"), (LONG, "a2")), idle=0.05)
    committed = await fallback.open_stream(plans(a), Policy())
    started = time.monotonic()
    with pytest.raises(fallback.StreamFailed) as failed:
        await asyncio.wait_for(drain(committed), 4)
    assert failed.value.error.kind == "Timeout" and "idle" in failed.value.error.detail
    assert time.monotonic() - started < 3  # the next chunk was LONG away
    assert a.closed == 1


async def test_the_attempt_deadline_holds_for_a_committed_stream():
    # Chunks keep coming within the idle deadline, but the attempt as a whole runs out.
    chunks = [(0.02, f"c{i}") for i in range(100)]
    a = Script("a", stream((0, "first"), *chunks), attempt=0.15, idle=1.0)
    committed = await fallback.open_stream(plans(a), Policy())
    with pytest.raises(fallback.StreamFailed) as failed:
        await asyncio.wait_for(drain(committed), 3)
    assert failed.value.error.kind == "Timeout" and "attempt" in failed.value.error.detail
    assert committed.attempt.status == "timeout"
    assert a.finished == 0 and a.closed == 1


async def test_the_chain_deadline_holds_for_a_committed_stream():
    # timeout_total (Policy.overall) of an agent stream: the stream cannot outlive it, nor restart after it.
    chunks = [(0.02, f"c{i}") for i in range(100)]
    a = Script("a", stream((0, "first"), *chunks), attempt=LONG, idle=1.0)
    b = Script("b", stream((0, "b")))
    committed = await fallback.open_stream(plans(a, b), Policy(overall=0.15))
    with pytest.raises(fallback.StreamFailed) as failed:
        await asyncio.wait_for(drain(committed), 3)
    assert failed.value.error.kind == "Timeout"
    assert not committed.can_restart
    with pytest.raises(exc.AllAttemptsFailed):
        await fallback.restart_stream(failed.value)
    assert b.calls == []


# ---- streams commit on their first chunk --------------------------------------------------------


async def test_a_failure_before_the_first_chunk_falls_over_silently():
    a = Script("a", stream(then=unavailable(), after=0.01), stream(then=unavailable()))
    b = Script("b", stream((0, "b1")))
    committed = await fallback.open_stream(plans(a, b), Policy())
    assert committed.attempt.provider_uid == "b"
    assert await drain(committed) == ["b1"]


async def test_a_stream_that_ends_before_its_first_chunk_is_a_failure():
    a = Script("a", stream(), stream())
    b = Script("b", stream((0, "b1")))
    committed = await fallback.open_stream(plans(a, b), Policy())
    assert committed.attempt.provider_uid == "b"
    assert committed.attempts[0].error_type == "Unavailable"
    assert "ended before its first chunk" in committed.attempts[0].error


async def test_a_failure_after_the_first_chunk_is_told_not_hidden():
    a = Script("a", stream((0, "a1"), (0, "a2"), then=unavailable()))
    b = Script("b", stream((0, "b1")))
    committed = await fallback.open_stream(plans(a, b), Policy())
    seen = []
    with pytest.raises(fallback.StreamFailed) as failed:
        async for chunk in committed:
            seen.append(chunk)
    assert seen == ["a1", "a2"]
    assert failed.value.committed is committed and committed.attempt.status == "error"
    assert b.calls == []  # no silent fall over once committed
    assert fallback.served(committed.attempts) is committed.attempt  # a truncated answer is not "ok"


async def test_a_committed_sequential_stream_restarts_from_the_next_entry():
    a = Script("a", stream((0, "a1")))
    b = Script("b", stream((0, "b1"), then=unavailable()))
    c = Script("c", stream((0, "c1")))
    committed = await fallback.open_stream(plans(a, b, c), Policy())
    assert await drain(committed) == ["a1"]
    # a succeeded; now break b explicitly via a chain starting at b
    committed = await fallback.open_stream(plans(b, c), Policy())
    with pytest.raises(fallback.StreamFailed) as failed:
        await drain(committed)
    assert failed.value.committed.can_restart
    restarted = await fallback.restart_stream(failed.value)
    assert restarted.attempt.provider_uid == "c"
    assert await drain(restarted) == ["c1"]
    assert statuses(restarted.attempts) == [("b", "error"), ("c", "ok")]


async def test_a_sequential_restart_never_goes_back_to_an_earlier_entry():
    a = Script("a", stream(then=unavailable()), stream(then=unavailable()))
    b = Script("b", stream((0, "b1"), then=unavailable()))
    committed = await fallback.open_stream(plans(a, b), Policy())
    with pytest.raises(fallback.StreamFailed) as failed:
        await drain(committed)
    assert not committed.can_restart
    with pytest.raises(exc.AllAttemptsFailed):
        await fallback.restart_stream(failed.value)
    assert len(a.calls) == 2  # only its own first attempt (and retry)


async def test_a_parallel_restart_goes_to_every_other_entry():
    a = Script("a", stream((0.1, "a1")), stream((0, "a again")))
    b = Script("b", stream((0, "b1"), then=unavailable()))
    committed = await fallback.open_stream(plans(a, b), Policy(strategy="parallel"))
    assert committed.attempt.provider_uid == "b"
    with pytest.raises(fallback.StreamFailed) as failed:
        await drain(committed)
    assert committed.can_restart
    restarted = await fallback.restart_stream(failed.value)
    assert restarted.attempt.provider_uid == "a"
    assert await drain(restarted) == ["a again"]


async def test_a_parallel_restart_skips_an_entry_that_already_failed_in_the_race():
    a = Script("a", stream((0.1, "a1")), stream((0, "a again")))
    b = Script("b", stream((0.02, "b1"), (0.05, "b2"), then=unavailable()))
    c = Script("c", fail(exc.BadRequest("no", upstream_status=400)))  # one step: a second call fails the test
    committed = await fallback.open_stream(plans(a, b, c), Policy(strategy="parallel"))
    assert committed.attempt.provider_uid == "b"
    with pytest.raises(fallback.StreamFailed) as failed:
        await drain(committed)
    restarted = await fallback.restart_stream(failed.value)
    assert restarted.attempt.provider_uid == "a"
    assert await drain(restarted) == ["a again"]
    assert len(c.calls) == 1


async def test_a_sequential_restart_skips_a_hedge_that_already_failed():
    a = Script("a", stream((0.05, "a1"), (0.05, "a2"), then=unavailable()), hedge=0.01)
    b = Script("b", fail(exc.BadRequest("no", upstream_status=400)))  # the hedge: fails before a commits
    c = Script("c", stream((LONG, "c1")), stream((0, "c1")))  # started when b failed, lost to a
    committed = await fallback.open_stream(plans(a, b, c), Policy())
    assert committed.attempt.provider_uid == "a" and len(b.calls) == 1
    with pytest.raises(fallback.StreamFailed) as failed:
        await drain(committed)
    restarted = await fallback.restart_stream(failed.value)
    assert restarted.attempt.provider_uid == "c" and len(b.calls) == 1


# ---- races and hedges ---------------------------------------------------------------------------


async def test_parallel_starts_every_entry_at_once_and_cancels_the_losers():
    a = Script("a", ok("slow", after=LONG))
    b = Script("b", ok("fast", after=0.02))
    c = Script("c", ok("slow", after=LONG))
    outcome = await asyncio.wait_for(fallback.run(plans(a, b, c), Policy(strategy="parallel")), 2)
    assert outcome.result == "fast"
    assert (a.cancelled, c.cancelled) == (1, 1)
    assert statuses(outcome.attempts) == [("a", "cancelled"), ("b", "ok"), ("c", "cancelled")]


async def test_a_failed_parallel_entry_does_not_end_the_race():
    a = Script("a", fail(exc.BadRequest("no", upstream_status=400)))
    b = Script("b", ok("b", after=0.03))
    outcome = await fallback.run(plans(a, b), Policy(strategy="parallel"))
    assert outcome.result == "b"


async def test_parallel_streams_race_to_the_first_chunk_and_the_losers_are_closed():
    a = Script("a", stream((LONG, "a1")))
    b = Script("b", stream((0.02, "b1"), (0, "b2")))
    committed = await asyncio.wait_for(fallback.open_stream(plans(a, b), Policy(strategy="parallel")), 2)
    assert committed.attempt.provider_uid == "b"
    assert a.cancelled == 1 and a.closed == 1
    assert await drain(committed) == ["b1", "b2"]
    assert statuses(committed.attempts) == [("a", "cancelled"), ("b", "ok")]


async def test_two_parallel_streams_committing_in_the_same_instant_have_one_winner():
    a = Script("a", stream((0, "a1"), (0.01, "a2")))
    b = Script("b", stream((0, "b1"), (0.01, "b2")))
    committed = await fallback.open_stream(plans(a, b), Policy(strategy="parallel"))
    loser = b if committed.attempt.provider_uid == "a" else a
    assert loser.closed == 1  # its upstream stream was closed
    loser_attempt = next(x for x in committed.attempts if x is not committed.attempt)
    assert loser_attempt.status == "cancelled"
    await drain(committed)
    assert [x.final_status for x in committed.attempts].count("ok") == 1


async def test_two_parallel_calls_finishing_in_the_same_instant_have_one_winner():
    a = Script("a", ok("a"))
    b = Script("b", ok("b"))
    outcome = await fallback.run(plans(a, b), Policy(strategy="parallel"))
    # The earliest entry wins, the other is recorded as the loser it is, and the logs name the winner.
    assert statuses(outcome.attempts) == [("a", "ok"), ("b", "cancelled")] and outcome.result == "a"
    assert fallback.served(outcome.attempts) is outcome.attempt


async def test_sequential_unhedged_never_starts_the_next_entry_while_one_runs():
    a = Script("a", ok("a", after=0.1))
    b = Script("b", ok("b"))
    outcome = await fallback.run(plans(a, b), Policy(hedge="off"))
    assert outcome.result == "a" and b.calls == []


async def test_a_hedge_starts_the_next_entry_after_its_delay_and_the_first_success_wins():
    a = Script("a", ok("a", after=LONG))
    b = Script("b", ok("b", after=0.01))
    started = time.monotonic()
    outcome = await asyncio.wait_for(fallback.run(plans(a, b), Policy(hedge=0.05)), 2)
    assert outcome.result == "b"
    assert b.calls[0] - started >= 0.045  # not before the delay
    assert a.cancelled == 1
    assert statuses(outcome.attempts) == [("a", "cancelled"), ("b", "ok")]


async def test_a_plans_own_hedge_applies_when_the_request_has_none():
    a = Script("a", ok("a", after=LONG), hedge=0.03)
    b = Script("b", ok("b"))
    outcome = await asyncio.wait_for(fallback.run(plans(a, b), Policy()), 2)
    assert outcome.result == "b"


async def test_the_requests_hedge_comes_before_the_plans():
    a = Script("a", ok("a", after=0.1), hedge=0.01)
    b = Script("b", ok("b"))
    outcome = await fallback.run(plans(a, b), Policy(hedge="off"))
    assert outcome.result == "a" and b.calls == []


# ---- the circuit breaker ------------------------------------------------------------------------


async def _open_breaker(uid: str) -> None:
    await breaker.report(uid, "m", unavailable())


async def test_an_entry_the_breaker_refuses_is_skipped(settings):
    settings.QALBY_BREAKER_THRESHOLD = 1
    await _open_breaker("a")
    a = Script("a", ok("a"))
    b = Script("b", ok("b"))
    outcome = await fallback.run(plans(a, b), Policy())
    assert outcome.result == "b" and a.calls == []
    assert statuses(outcome.attempts) == [("a", "skipped"), ("b", "ok")]


async def test_the_last_entry_runs_whatever_the_breaker_says(settings):
    settings.QALBY_BREAKER_THRESHOLD = 1
    await _open_breaker("b")
    a = Script("a", fail(exc.BadRequest("no", upstream_status=400)))
    b = Script("b", ok("b"))
    outcome = await fallback.run(plans(a, b), Policy())
    assert outcome.result == "b"


async def test_the_breaker_is_told_how_each_attempt_ended(settings):
    settings.QALBY_BREAKER_THRESHOLD = 1
    a = Script("a", fail(unavailable()), fail(unavailable()))
    b = Script("b", ok("b"), ok("b"))
    await fallback.run(plans(a, b), Policy())
    outcome = await fallback.run(plans(a, b), Policy())  # a's failure opened its breaker
    assert statuses(outcome.attempts) == [("a", "skipped"), ("b", "ok")]
    assert len(a.calls) == 2  # the first request's try and its one retry, nothing after
