"""More rules of the fallback engine, pinned down where the mutation check (scripts/mutation.py) found
that no test would notice a change: what an attempt records, boundaries of the retry policy, where a
restart may go, what the engine learns for hedging, the request log's notes, the breaker mid-stream,
and the closing of upstream streams. Same scripted adapter as tests/engine/test_engine_rules.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from providers import exceptions as exc
from providers import fallback, requestlogs
from providers.adapters import sse
from providers.fallback import Deadlines, Plan, Policy
from providers.hedging import first_chunk_times
from tests.engine.test_engine_rules import LONG, Script, drain, fail, ok, plans, statuses, stream, unavailable


@pytest.fixture(autouse=True)
def engine_settings(settings):
    settings.REDIS_URL = ""
    settings.QALBY_BREAKER_THRESHOLD = 0
    settings.QALBY_RETRY_BACKOFF = 0.01
    settings.QALBY_MAX_RETRY_AFTER = 0.5
    # Learned hedge delays read back exactly: one sample is enough, the highest one counts, no bounds.
    settings.QALBY_HEDGE_SAMPLES = 1
    settings.QALBY_HEDGE_PERCENTILE = 100.0
    settings.QALBY_HEDGE_MIN = 0.0001
    settings.QALBY_HEDGE_MAX = 1000.0
    settings.QALBY_HEDGE_DEFAULT = 4.0
    return settings


def learned(uid: str, streamed: bool, model: str = "m") -> float | None:
    """The time to the first chunk the engine recorded for hedging, or None when it recorded none."""
    delay = first_chunk_times.delay(uid, model, streamed)
    return None if delay == 4.0 else delay


class Source:
    """An upstream stream object (what an SDK returns) whose closing can be watched and made to misbehave."""

    def __init__(self, *chunks, error: BaseException | None = None, close_error: BaseException | None = None,
                 close_after: float = 0.0) -> None:
        self.chunks = list(chunks)
        self.error = error
        self.close_error = close_error
        self.close_after = close_after
        self.closes = 0
        self.seen_attempts: list = []  # sse.attempt as each read saw it

    def __aiter__(self):
        return self

    async def __anext__(self):
        self.seen_attempts.append(sse.attempt.get())
        if self.chunks:
            return self.chunks.pop(0)
        if self.error is not None:
            raise self.error
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closes += 1
        await asyncio.sleep(self.close_after)
        if self.close_error is not None:
            raise self.close_error


def source_plan(uid: str, *sources: Source, attempt: float = LONG, idle: float | None = None) -> Plan:
    queue = list(sources)
    return Plan(uid, "m", Deadlines(attempt=attempt, idle=idle), lambda error: None, stream=lambda: queue.pop(0))


@pytest.fixture
def log_entry():
    entry = requestlogs.Entry(request_id="r1", endpoint="/test")
    token = requestlogs.current.set(entry)
    yield entry
    requestlogs.current.reset(token)


# ---- what an attempt records ----------------------------------------------------------------------


async def test_a_failed_attempt_records_the_upstream_status_only_when_there_is_one():
    a = Script("a", fail(unavailable(), after=0.03), fail(unavailable()))
    b = Script("b", fail(exc.BadRequest("bad input")))
    c = Script("c", ok())
    outcome = await fallback.run(plans(a, b, c), Policy())
    first, second = outcome.attempts[0], outcome.attempts[1]
    assert first.error == "upstream 503 (HTTP 503)" and first.upstream_status == 503
    assert second.error == "bad input" and second.upstream_status is None
    assert first.latency_ms >= 30 and second.latency_ms is not None


async def test_a_skipped_attempt_is_a_circuit_open_of_no_time(settings):
    settings.QALBY_BREAKER_THRESHOLD = 1
    from providers.breaker import breaker

    await breaker.report("a", "m", unavailable())
    outcome = await fallback.run(plans(Script("a"), Script("b", ok())), Policy())
    skipped = outcome.attempts[0]
    assert (skipped.status, skipped.error_type, skipped.latency_ms) == ("skipped", "CircuitOpen", 0)
    assert skipped.public()["error_type"] == "CircuitOpen"


# ---- retry boundaries ----------------------------------------------------------------------------


async def test_a_429_retry_after_of_exactly_the_maximum_is_still_waited(settings):
    settings.QALBY_MAX_RETRY_AFTER = 0.05
    a = Script("a", fail(exc.RateLimited("slow down", upstream_status=429, retry_after=0.05)), ok("later"))
    outcome = await fallback.run(plans(a), Policy())
    assert outcome.result == "later" and outcome.attempts[0].retries == 1


async def test_a_5xx_wait_of_exactly_the_maximum_is_still_waited(settings):
    settings.QALBY_MAX_RETRY_AFTER = 0.05
    a = Script("a", fail(unavailable(retry_after=0.05)), ok("later"))
    outcome = await fallback.run(plans(a), Policy())
    assert outcome.result == "later" and outcome.attempts[0].retries == 1


# ---- where a restart may go ----------------------------------------------------------------------


async def test_a_single_entry_chain_has_nowhere_to_restart():
    committed = await fallback.open_stream(plans(Script("a", stream((0, "a1")))), Policy())
    assert not committed.can_restart
    assert await drain(committed) == ["a1"]


async def test_a_sequential_restart_skips_an_earlier_entry_that_lost_the_hedge_race():
    a = Script("a", stream((LONG, "a1")), hedge=0.01)  # slow: b, its hedge, commits first; a is cancelled
    b = Script("b", stream((0.01, "b1"), then=unavailable()), hedge="off")
    c = Script("c", stream((0, "c1")))
    committed = await asyncio.wait_for(fallback.open_stream(plans(a, b, c), Policy()), 2)
    assert committed.attempt.provider_uid == "b"
    with pytest.raises(fallback.StreamFailed) as failed:
        await drain(committed)
    restarted = await fallback.restart_stream(failed.value)
    assert restarted.attempt.provider_uid == "c" and len(a.calls) == 1
    assert await drain(restarted) == ["c1"]


async def test_a_parallel_restart_skips_an_entry_that_timed_out_in_the_race():
    a = Script("a", stream((0.15, "a1")), stream((0, "a again")))
    b = Script("b", stream((0.06, "b1"), (0.05, "b2"), then=unavailable()))
    c = Script("c", stream((LONG, "c1")), first_chunk=0.01)  # times out before b commits; one step only
    committed = await fallback.open_stream(plans(a, b, c), Policy(strategy="parallel"))
    assert committed.attempt.provider_uid == "b"
    with pytest.raises(fallback.StreamFailed) as failed:
        await drain(committed)
    assert [x.final_status for x in committed.attempts if x.provider_uid == "c"] == ["timeout"]
    restarted = await fallback.restart_stream(failed.value)
    assert restarted.attempt.provider_uid == "a" and len(c.calls) == 1
    assert await drain(restarted) == ["a again"]


# ---- what the engine learns for hedging ----------------------------------------------------------


async def test_a_streams_time_to_its_first_chunk_is_learned_per_provider_and_model():
    committed = await fallback.open_stream(plans(Script("a", stream((0.05, "a1")))), Policy())
    await drain(committed)
    assert learned("a", streamed=True) == pytest.approx(committed.attempt.first_chunk_ms / 1000, abs=1e-9)
    assert 0.045 <= learned("a", streamed=True) < 1
    assert learned("a", streamed=False) is None


async def test_a_calls_time_is_learned_as_a_call_not_a_stream():
    outcome = await fallback.run(plans(Script("a", ok(after=0.05))), Policy())
    assert learned("a", streamed=False) == pytest.approx(outcome.attempt.latency_ms / 1000, abs=1e-9)
    assert learned("a", streamed=True) is None


async def test_the_learned_delay_of_the_entry_is_the_hedge_of_a_stream():
    first_chunk_times.observe("a", "m", True, 0.03)  # learned: a's first chunk takes 30 ms
    a = Script("a", stream((LONG, "a1")))
    b = Script("b", stream((0, "b1")))
    started = time.monotonic()
    committed = await asyncio.wait_for(fallback.open_stream(plans(a, b), Policy()), 2)
    assert committed.attempt.provider_uid == "b" and 0.025 <= b.calls[0] - started < 1
    await drain(committed)


async def test_streams_hedge_by_default_calls_do_not(settings):
    settings.QALBY_HEDGE_DEFAULT = 0.03
    a = Script("a", stream((0.3, "a1")))
    b = Script("b", stream((0, "b1")))
    committed = await asyncio.wait_for(fallback.open_stream(plans(a, b), Policy()), 2)
    assert committed.attempt.provider_uid == "b"
    await drain(committed)
    outcome = await fallback.run(plans(Script("a", ok("a", after=0.1)), Script("b", ok("b"))), Policy())
    assert outcome.result == "a"


async def test_a_hedge_that_lost_before_its_first_chunk_is_learned_as_at_least_that_slow():
    a = Script("a", stream((LONG, "a1")), hedge=0.05)
    b = Script("b", stream((0.02, "b1")))
    committed = await asyncio.wait_for(fallback.open_stream(plans(a, b), Policy()), 2)
    assert committed.attempt.provider_uid == "b"
    await drain(committed)
    assert 0.065 <= learned("a", streamed=True) < 1  # a ran 50 ms + b's 20 ms before it lost
    assert learned("a", streamed=False) is None


async def test_a_call_hedge_that_lost_is_learned_as_a_call():
    a = Script("a", ok("a", after=LONG), hedge=0.05)
    b = Script("b", ok("b", after=0.02))
    outcome = await asyncio.wait_for(fallback.run(plans(a, b), Policy()), 2)
    assert outcome.result == "b"
    assert 0.065 <= learned("a", streamed=False) < 1
    assert learned("a", streamed=True) is None


async def test_the_loser_of_a_parallel_race_is_not_learned():
    a = Script("a", stream((LONG, "a1")))
    b = Script("b", stream((0.02, "b1")))
    committed = await asyncio.wait_for(fallback.open_stream(plans(a, b), Policy(strategy="parallel")), 2)
    await drain(committed)
    assert learned("a", streamed=True) is None


async def test_a_hedge_that_failed_or_committed_is_not_learned_as_a_loser():
    # a fails (its own time is not a time to a first chunk); c loses to b after a's failure started it.
    a = Script("a", fail(exc.BadRequest("no", upstream_status=400), after=0.01), hedge="off")
    b = Script("b", stream((0.05, "b1")), hedge=0.01)
    c = Script("c", stream((LONG, "c1")))
    committed = await asyncio.wait_for(fallback.open_stream(plans(a, b, c), Policy()), 2)
    assert committed.attempt.provider_uid == "b"
    await drain(committed)
    assert learned("a", streamed=True) is None
    assert 0 < learned("c", streamed=True) < 1


# ---- a committed stream: the failure it raises, its notes, the breaker -------------------------------


async def test_a_stream_failure_carries_the_providers_error_and_the_chains_attempts():
    error = unavailable()
    a = Script("a", stream((0, "a1"), then=error))
    committed = await fallback.open_stream(plans(a), Policy())
    with pytest.raises(fallback.StreamFailed) as failed:
        await drain(committed)
    assert failed.value.error is error and str(failed.value) == "upstream 503"
    assert failed.value.attempts is committed.attempts
    assert committed.attempt.error == "upstream 503 (HTTP 503)"


async def test_a_stalled_stream_names_its_idle_deadline_the_provider_and_the_model():
    a = Script("a", stream((0, "a1"), (LONG, "a2")), idle=0.05)
    committed = await fallback.open_stream(plans(a), Policy())
    with pytest.raises(fallback.StreamFailed) as failed:
        await asyncio.wait_for(drain(committed), 2)
    error = failed.value.error
    assert error.detail == "the stream stalled (no chunk within the idle deadline of 0.05s)"
    assert (error.provider_uid, error.model) == ("a", "m")


async def test_a_stream_past_its_attempt_deadline_names_it_the_provider_and_the_model():
    a = Script("a", stream((0, "a1"), (LONG, "a2")), attempt=0.1)
    committed = await fallback.open_stream(plans(a), Policy())
    with pytest.raises(fallback.StreamFailed) as failed:
        await asyncio.wait_for(drain(committed), 2)
    error = failed.value.error
    assert error.detail.startswith("the stream stalled (no chunk within the attempt deadline of 0.")
    assert (error.provider_uid, error.model) == ("a", "m")


async def test_a_committed_stream_notes_its_end_in_the_request_log(log_entry):
    committed = await fallback.open_stream(plans(Script("a", stream((0, "a1")))), Policy())
    await drain(committed)
    assert log_entry.outcome == "done"


async def test_a_broken_stream_notes_the_error_in_the_request_log(log_entry):
    committed = await fallback.open_stream(plans(Script("a", stream((0, "a1"), then=unavailable()))), Policy())
    with pytest.raises(fallback.StreamFailed):
        await drain(committed)
    assert log_entry.outcome == "error"
    assert log_entry.error == "a/m: upstream 503 (HTTP 503)"


async def test_a_stream_that_breaks_after_committing_is_reported_to_the_breaker(settings):
    settings.QALBY_BREAKER_THRESHOLD = 1
    a = Script("a", stream((0, "a1"), then=unavailable()))
    committed = await fallback.open_stream(plans(a), Policy())
    with pytest.raises(fallback.StreamFailed):
        await drain(committed)
    outcome = await fallback.run(plans(Script("a", ok("a")), Script("b", ok("b"))), Policy())
    assert statuses(outcome.attempts) == [("a", "skipped"), ("b", "ok")]


async def test_every_read_of_a_stream_counts_its_undecodable_events_on_the_attempt():
    source = Source("c1", "c2", "c3")
    committed = await fallback.open_stream([source_plan("a", source)], Policy())
    assert await drain(committed) == ["c1", "c2", "c3"]
    assert source.seen_attempts and all(seen is committed.attempt for seen in source.seen_attempts)


# ---- first chunks -------------------------------------------------------------------------------


async def test_the_attempt_deadline_bounds_the_wait_for_a_first_chunk():
    a = Script("a", stream((LONG, "a1")), attempt=0.05)  # no first-chunk deadline of its own
    b = Script("b", stream((0, "b1")))
    committed = await asyncio.wait_for(fallback.open_stream(plans(a, b), Policy()), 2)
    assert committed.attempt.provider_uid == "b"
    assert committed.attempts[0].status == "timeout"


async def test_a_short_first_chunk_deadline_is_kept_to():
    a = Script("a", stream((LONG, "a1")), first_chunk=0.05)
    b = Script("b", stream((0, "b1")))
    started = time.monotonic()
    committed = await asyncio.wait_for(fallback.open_stream(plans(a, b), Policy()), 2)
    assert committed.attempt.provider_uid == "b" and b.calls[0] - started < 0.5
    assert committed.attempts[0].error == "no first chunk within 0.05s"


async def test_a_stream_that_ends_before_its_first_chunk_says_so():
    a = Script("a", stream(), stream())
    committed = await fallback.open_stream(plans(a, Script("b", stream((0, "b1")))), Policy())
    assert committed.attempts[0].error == "the stream ended before its first chunk"


async def test_a_failing_close_of_a_stream_that_failed_before_its_first_chunk_is_ignored():
    failing = [Source(error=unavailable(), close_error=RuntimeError("close broke")) for _ in range(2)]
    plan = source_plan("a", *failing)
    b = Script("b", stream((0, "b1")))
    committed = await fallback.open_stream([plan, b.plan()], Policy())
    assert committed.attempt.provider_uid == "b"
    first = committed.attempts[0]
    assert (first.error, first.retries) == ("upstream 503 (HTTP 503)", 1)  # the provider's error, retried
    assert [s.closes for s in failing] == [1, 1]


# ---- closing a committed stream ------------------------------------------------------------------


async def test_closing_a_committed_stream_closes_its_upstream_once():
    source = Source("c1", "c2")
    committed = await fallback.open_stream([source_plan("a", source)], Policy())
    await committed.aclose()
    await committed.aclose()
    assert source.closes == 1
    assert committed.attempt.status == "cancelled"


async def test_an_upstream_that_fails_to_close_does_not_fail_the_close():
    source = Source("c1", close_error=RuntimeError("connection reset"))
    committed = await fallback.open_stream([source_plan("a", source)], Policy())
    await committed.aclose()
    assert source.closes == 1


async def test_an_upstream_that_does_not_let_go_is_given_a_bounded_time_to_close(monkeypatch):
    monkeypatch.setattr(fallback, "CLOSE_TIMEOUT", 0.05)
    source = Source("c1", close_after=LONG)
    committed = await fallback.open_stream([source_plan("a", source)], Policy())
    started = time.monotonic()
    await asyncio.wait_for(committed.aclose(), 2)
    assert time.monotonic() - started < 1


# ---- the attempts header -------------------------------------------------------------------------


async def test_the_attempts_header_line_names_each_attempt_its_status_and_error_type():
    a = Script("a", fail(exc.BadRequest("no", upstream_status=400)))
    b = Script("b", ok("b"), model="m2")
    outcome = await fallback.run(plans(a, b), Policy())
    line = fallback.attempts_line([attempt.public() for attempt in outcome.attempts])
    assert line == "a/m=error:BadRequest, b/m2=ok"
    assert fallback.attempts_line([]) == ""


# ---- typing what an attempt raised ---------------------------------------------------------------


async def test_an_attempt_cut_at_its_deadline_says_so():
    a = Script("a", ok(after=LONG), attempt=0.05)
    outcome = await fallback.run(plans(a, Script("b", ok())), Policy())
    assert outcome.attempts[0].error == "the provider did not answer within the deadline"


async def test_map_error_is_given_the_sdks_own_exception():
    mapped = exc.AuthFailed("the key was refused", upstream_status=401)
    a = Script("a", fail(ValueError("sdk says 401")), map_error=lambda e: mapped if isinstance(e, ValueError) else None)
    outcome = await fallback.run(plans(a, Script("b", ok())), Policy())
    assert outcome.attempts[0].error_type == "AuthFailed"


async def test_an_unexpected_exception_is_logged_with_its_type_provider_and_traceback(caplog):
    bug = ZeroDivisionError("bug")
    await fallback.run(plans(Script("a", fail(bug)), Script("b", ok())), Policy())
    [record] = [r for r in caplog.records if r.name == "qalby.engine"]
    assert record.getMessage() == "unexpected ZeroDivisionError in an attempt on a"
    assert record.levelname == "ERROR" and record.exc_info[1] is bug


async def test_the_loser_of_a_race_is_recorded_cancelled_with_its_time():
    a = Script("a", ok("a", after=LONG))
    b = Script("b", ok("b", after=0.03))
    outcome = await asyncio.wait_for(fallback.run(plans(a, b), Policy(strategy="parallel")), 2)
    loser = outcome.attempts[0]
    assert loser.status == "cancelled" and loser.latency_ms is not None and loser.latency_ms >= 25


async def test_a_close_that_is_itself_cancelled_stays_a_cancellation():
    # The request went away while the upstream was closing: the cancellation goes on, nothing replaces it.
    source = Source("c1", close_after=LONG)
    committed = await fallback.open_stream([source_plan("a", source)], Policy())
    closing = asyncio.ensure_future(committed.aclose())
    await asyncio.sleep(0.02)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
