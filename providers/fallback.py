"""The fallback engine: one for every endpoint (chat, speech, transcription).

A request is a chain of *plans* (provider + model + how to call it). The engine runs them
``sequential``-ly (hedged: the next one also starts when the current one is slow to its first
chunk) or races them in ``parallel``, and every try is an :class:`AttemptRecord`, the
unit the answer, the logs, the metrics and the traces are built from. Calls and streams share
one attempt loop (:func:`_attempt`) and one chain loop (:func:`_chain`); they differ only in
what one try does (:func:`_call`, :func:`_open`). The policies are small functions below, so they can be
replaced one at a time:

- retry (``_may_retry``): at most once on the same provider, only for a short Retry-After,
  a 5xx, or a dropped connection before any byte; never for a rejection of the request itself;
- a content-policy refusal ends the chain (``_ends_chain``) unless the request opts in to falling over;
- deadlines (``Deadlines``): per attempt in total, to the first chunk, and between chunks, plus
  an optional one for the whole chain; a deadline is a typed, retryable-elsewhere ``Timeout``;
- streams commit on their first chunk: before it a failure falls over silently, after it the
  caller ends the stream with an error or restarts the chain from its next entry (``restart_stream``);
- one loop runs every strategy (:func:`_chain`): an entry starts when nothing runs, when the one
  before it failed, or when the newest running one has not produced its first chunk within its
  hedge delay (``providers/hedging.py``; parallel: a delay of 0, sequential unhedged: never); the
  first to succeed wins, the others are cancelled and recorded as ``cancelled``;
- the circuit breaker (``providers/breaker.py``) is asked before an entry starts and told how each
  attempt ended; an entry it refuses is a ``skipped`` attempt, unless it is the last one left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from django.conf import settings

from providers import exceptions as exc
from providers import requestlogs
from providers.adapters import sse
from providers.breaker import breaker
from providers.hedging import Hedge, delay_of, first_chunk_times

logger = logging.getLogger("qalby.engine")

T = TypeVar("T")
CLOSE_TIMEOUT = 2.0  # seconds a broken or abandoned upstream stream gets to close
Strategy = Literal["sequential", "parallel"]


@dataclass(frozen=True)
class Deadlines:
    attempt: float  # seconds for one attempt, retry included
    first_chunk: float | None = None  # streams: seconds to the first chunk
    idle: float | None = None  # streams: longest silence between chunks


@dataclass(frozen=True)
class Policy:
    """How a chain runs: its strategy, the deadline of the whole chain, the refusal kinds after which it
    still moves on, and its hedge (the request's ``hedge_after``; None: each entry's own)."""

    strategy: Strategy = "sequential"
    overall: float | None = None
    fall_over: frozenset[str] = frozenset()
    hedge: Hedge = None


@dataclass
class AttemptRecord:
    """One try of one plan. Every policy reads and writes these; the answer, the request log, the
    metrics and the traces are all built from them."""

    index: int
    provider_uid: str
    model: str
    status: str = "pending"  # ok | error | timeout | cancelled | skipped
    error: str | None = None
    error_type: str | None = None
    upstream_status: int | None = None
    retries: int = 0
    started: float = 0.0
    latency_ms: int | None = None
    first_chunk_ms: int | None = None
    tools: list[str] = field(default_factory=list)  # tools the proxy ran for this attempt (agent loop)
    skipped_events: int = 0  # undecodable stream events skipped (providers/adapters/sse.py)

    @property
    def final_status(self) -> str:
        """The status to report once the request is over: an attempt still pending was cut short."""
        return "cancelled" if self.status == "pending" else self.status

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def succeed(self) -> None:
        self.status, self.latency_ms = "ok", self._elapsed_ms()

    def fail(self, error: exc.ProviderError) -> None:
        self.status = error.outcome
        status = f" (HTTP {error.upstream_status})" if error.upstream_status else ""
        self.error, self.error_type, self.upstream_status = error.detail + status, error.kind, error.upstream_status
        self.latency_ms = self._elapsed_ms()

    def skip(self, reason: str) -> None:
        """Not tried: the circuit breaker refused it (providers/breaker.py)."""
        self.status, self.error, self.error_type, self.latency_ms = "skipped", reason, "CircuitOpen", 0

    def cancel(self) -> None:
        if self.status == "pending":
            self.status, self.latency_ms = "cancelled", self._elapsed_ms()

    def lose(self) -> None:
        """It answered in the same instant as the winner: its answer is not used, so it is a loser of
        the race like the others, not a second success (the logs name one attempt that served)."""
        self.status = "cancelled"

    def chunk_arrived(self) -> None:
        if self.first_chunk_ms is None:
            self.first_chunk_ms = self._elapsed_ms()

    def public(self) -> dict[str, Any]:
        return {
            "provider_uid": self.provider_uid,
            "model": self.model,
            "status": self.final_status,
            "error": self.error,
            "error_type": self.error_type,
            "latency_ms": self.latency_ms,
            "tools": list(self.tools),
            "skipped_events": self.skipped_events,
        }


@dataclass
class Plan(Generic[T]):
    """One entry of a chain. ``call``/``stream`` do the provider call; ``map_error`` types SDK errors."""

    provider_uid: str
    model: str
    deadlines: Deadlines
    map_error: Callable[[BaseException], exc.ProviderError | None]
    call: Callable[[], Awaitable[T]] | None = None
    stream: Callable[[], AsyncIterator[Any]] | None = None
    hedge: Hedge = None  # its provider config's hedge_after option (the request's comes first)


def served(attempts: list[AttemptRecord]) -> AttemptRecord | None:
    """The attempt that answered the client: the one that succeeded, else a stream that delivered its
    first chunk and then broke. The request log, the metrics and the traces all name this one."""
    return next((a for a in attempts if a.status == "ok"), None) or next(
        (a for a in reversed(attempts) if a.first_chunk_ms is not None), None
    )


def attempts_line(attempts: list[dict[str, Any]]) -> str:
    """Attempts (as ``AttemptRecord.public()`` gives them) in one header line, ``uid/model=status[:ErrorType], ...``."""
    return ", ".join(f"{a['provider_uid']}/{a['model']}={a['status']}" + (f":{a['error_type']}" if a.get("error_type") else "")
                     for a in attempts)


@dataclass
class Outcome(Generic[T]):
    result: T
    attempt: AttemptRecord
    attempts: list[AttemptRecord]


class _Chain:
    """Bookkeeping shared by every strategy: attempts in order, errors, the overall deadline."""

    def __init__(self, plans: list[Plan], policy: Policy, streamed: bool) -> None:
        self.plans = plans
        self.policy = policy
        self.streamed = streamed
        self.attempts: list[AttemptRecord] = []
        self.errors: list[exc.ProviderError] = []
        self.ends_at = time.monotonic() + policy.overall if policy.overall else None
        requestlogs.attach_attempts(self.attempts, policy.strategy, len(plans))

    @property
    def strategy(self) -> Strategy:
        return self.policy.strategy

    def start(self, index: int, plan: Plan) -> AttemptRecord:
        attempt = AttemptRecord(index, plan.provider_uid, plan.model, started=time.monotonic())
        self.attempts.append(attempt)
        return attempt

    def budget(self, plan: Plan) -> float:
        budget = plan.deadlines.attempt
        if self.ends_at is not None:
            budget = min(budget, self.ends_at - time.monotonic())
        return budget

    def failed(self) -> exc.AllAttemptsFailed:
        return exc.AllAttemptsFailed(self.attempts, self.errors)

    def hedge_delay(self, plan: Plan) -> float | None:
        """Seconds after ``plan`` starts at which the next entry starts too (None: only once it fails)."""
        if self.strategy == "parallel":
            return 0.0
        chosen = self.policy.hedge if self.policy.hedge is not None else plan.hedge
        return delay_of(chosen, plan.provider_uid, plan.model, self.streamed)

    def entries(self) -> list[tuple[int, Plan]]:
        return list(enumerate(self.plans))

    def entries_after(self, index: int) -> list[tuple[int, Plan]]:
        """Where a chain goes once entry ``index`` has failed after committing: the entries after it
        (sequential), or every other one (parallel: they lost the race), but never one that already
        failed in this chain (a hedge or a racer that failed before ``index`` committed)."""
        failed = {attempt.index for attempt in self.attempts if attempt.status in ("error", "timeout")}
        after = (lambda i: i != index) if self.strategy == "parallel" else (lambda i: i > index)
        return [(i, plan) for i, plan in enumerate(self.plans) if after(i) and i not in failed]


def _typed(error: BaseException, plan: Plan) -> exc.ProviderError:
    """Whatever an attempt raised, as a ProviderError naming the provider and model."""
    if isinstance(error, exc.ProviderError):
        typed = error
    elif isinstance(error, TimeoutError):
        typed = exc.Timeout("the provider did not answer within the deadline")
    else:
        typed = plan.map_error(error)
        if typed is None:
            # A bug of ours or an SDK surprise: the attempt fails, the chain goes on, the log keeps the trace.
            # Not retryable: the same call would meet the same bug; and not the provider's failure, so the
            # circuit breaker does not count it (breaker.verdict: no upstream status, not retryable).
            logger.error("unexpected %s in an attempt on %s", type(error).__name__, plan.provider_uid, exc_info=error)
            typed = exc.Unavailable(f"unexpected error in the adapter ({type(error).__name__})", retryable=False)
    typed.provider_uid = typed.provider_uid or plan.provider_uid
    typed.model = typed.model or plan.model
    return typed


def _may_retry(error: exc.ProviderError, retries: int, remaining: float) -> float | None:
    """Seconds to wait before the one retry on the same provider, or None to move on."""
    if retries >= 1:
        return None
    if isinstance(error, exc.RateLimited):
        wait = error.retry_after
        if wait is None or wait > settings.QALBY_MAX_RETRY_AFTER:
            return None  # no hint, or a long one: another provider is the better bet
    elif isinstance(error, exc.Unavailable) and error.retryable:
        wait = max(error.retry_after or 0.0, settings.QALBY_RETRY_BACKOFF)
        if wait > settings.QALBY_MAX_RETRY_AFTER:
            return None
    else:
        return None
    return wait if wait < remaining else None


Once = Callable[["_Chain", Plan, AttemptRecord, float], Awaitable[T]]


async def _attempt(chain: _Chain, attempt: AttemptRecord, plan: Plan, once: Once[T]) -> Outcome[T]:
    """One attempt of ``plan``: ``once`` with the attempt's deadline, retried as ``_may_retry`` allows."""
    ends_at = time.monotonic() + chain.budget(plan)
    while True:
        try:
            result = await once(chain, plan, attempt, ends_at)
        except (Exception, TimeoutError) as raw:
            error = _typed(raw, plan)
            wait = _may_retry(error, attempt.retries, ends_at - time.monotonic())
            if wait is None:
                attempt.fail(error)
                chain.errors.append(error)
                await breaker.report(plan.provider_uid, plan.model, error)
                raise error from None
            attempt.retries += 1
            await asyncio.sleep(wait)
            continue
        await breaker.report(plan.provider_uid, plan.model, None)
        return Outcome(result, attempt, chain.attempts)


def _ends_chain(error: exc.ProviderError, fall_over: frozenset[str]) -> bool:
    """A refusal of the content itself ends the chain, unless the request lists its kind in ``fall_over``:
    the next provider would only be asked for what one refused on policy grounds."""
    return isinstance(error, exc.ContentPolicy) and error.kind not in fall_over


class _Queue:
    """The entries of a chain not started yet, in order, as the circuit breaker lets them start."""

    def __init__(self, chain: _Chain, entries: list[tuple[int, Plan]]) -> None:
        self.chain = chain
        self.entries = list(entries)
        self.held: tuple[int, Plan, str] | None = None  # the last entry, refused, kept for when nothing runs

    def __bool__(self) -> bool:
        return bool(self.entries)

    async def next(self, alone: bool) -> tuple[int, Plan] | None:
        """The next entry to start, or None. An entry the breaker refuses is a ``skipped`` attempt
        unless it is the last one left: that one runs anyway, but only once nothing else runs
        (``alone``), so that a hedge never spends the last resort on a provider known to be down."""
        while self.entries:
            index, plan = self.entries[0]
            if self.chain.budget(plan) <= 0:
                self.entries.clear()
                return None
            last = len(self.entries) == 1
            # The last one left with nothing else running runs whatever the breaker says: not asked.
            reason = None if last and alone else await breaker.admit(plan.provider_uid, plan.model)
            if reason and not last:
                self.entries.pop(0)
                self.chain.start(index, plan).skip(reason)
                continue
            if reason:
                self.held = (index, plan, reason)
                return None
            self.entries.pop(0)
            self.held = None
            return index, plan
        return None

    def abandon(self) -> None:
        """The chain is over: a held entry that never ran is recorded as skipped, with the reason."""
        if self.held is not None:
            index, plan, reason = self.held
            self.chain.start(index, plan).skip(reason)
            self.held = None


async def _chain(chain: _Chain, entries: list[tuple[int, Plan]], once: Once[T]) -> Outcome[T]:
    """Run ``entries`` of the chain until one attempt succeeds; AllAttemptsFailed with every attempt
    otherwise. One loop for every strategy: the next entry starts when nothing runs, when an attempt
    failed, or when the newest one has reached its hedge delay without a result (parallel: at once).
    The first success wins; whatever else still runs is cancelled and awaited, so its connection
    closes, and recorded as ``cancelled``. A content-policy refusal (``_ends_chain``) ends it all."""
    queue = _Queue(chain, entries)
    running: dict[asyncio.Task, AttemptRecord] = {}
    hedge_at: float | None = None  # when the next entry starts though nothing failed
    winner: Outcome[T] | None = None
    try:
        if len(entries) == 1:  # nothing to hedge or race: the attempt runs in this task
            picked = await queue.next(alone=True)
            if picked is None:
                raise chain.failed()
            attempt = chain.start(*picked)
            try:
                winner = await _attempt(chain, attempt, picked[1], once)
            except exc.ProviderError:
                raise chain.failed() from None
            return winner
        due = True
        while True:
            while queue and (due or not running):
                picked = await queue.next(alone=not running)
                if picked is None:
                    break
                index, plan = picked
                attempt = chain.start(index, plan)
                running[asyncio.ensure_future(_attempt(chain, attempt, plan, once))] = attempt
                delay = chain.hedge_delay(plan)
                hedge_at = None if delay is None else time.monotonic() + delay
                due = delay == 0
            if not running:
                raise chain.failed()
            wait = None if hedge_at is None or not queue or queue.held else max(hedge_at - time.monotonic(), 0)
            done, _ = await asyncio.wait(running, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if not done:  # the newest entry reached its hedge delay without a first chunk
                due = True
                continue
            for task in done:
                del running[task]
            errors = [task.exception() for task in done if task.exception() is not None]
            if any(isinstance(e, exc.ProviderError) and _ends_chain(e, chain.policy.fall_over) for e in errors):
                raise chain.failed()
            # Finished in the same instant: the earliest entry wins (asyncio's done set has no order).
            winners = sorted((task.result() for task in done if task.exception() is None),
                             key=lambda won: chain.attempts.index(won.attempt))
            if winners:
                winner = winners[0]
                for late in winners[1:]:
                    late.attempt.lose()
                    if hasattr(late.result, "aclose"):  # a stream still needs closing
                        await late.result.aclose()
                return winner
            for error in errors:
                if not isinstance(error, exc.ProviderError):
                    raise error  # not a provider's failure (a bug of ours): nothing to fall over on
            due = True  # an attempt failed: the next entry starts now
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
            for attempt in running.values():
                _observe_loser(chain, attempt)
        queue.abandon()
        for attempt in chain.attempts:
            if winner is None or attempt is not winner.attempt:  # a committed stream is still running
                attempt.cancel()


def _observe_loser(chain: _Chain, attempt: AttemptRecord) -> None:
    """A hedge lost before its first chunk: its time so far is a lower bound of its time to the first
    chunk, which the learned hedge delay keeps (providers/hedging.py says why)."""
    if chain.strategy == "sequential" and attempt.status == "pending" and attempt.first_chunk_ms is None:
        first_chunk_times.observe(attempt.provider_uid, attempt.model, chain.streamed,
                                  time.monotonic() - attempt.started)


async def _call(chain: _Chain, plan: Plan[T], attempt: AttemptRecord, ends_at: float) -> T:
    async with asyncio.timeout(ends_at - time.monotonic()):
        result = await plan.call()
    attempt.succeed()
    first_chunk_times.observe(plan.provider_uid, plan.model, False, attempt.latency_ms / 1000)
    return result


async def run(plans: list[Plan[T]], policy: Policy) -> Outcome[T]:
    """Call the plans until one succeeds; raises AllAttemptsFailed with every attempt otherwise."""
    chain = _Chain(plans, policy, streamed=False)
    return await _chain(chain, chain.entries(), _call)


# ---- streams ------------------------------------------------------------------------------------


class StreamFailed(Exception):
    """A committed stream broke: the caller ends its response with an error line, or restarts the
    chain from its next entry (:func:`restart_stream`)."""

    def __init__(self, error: exc.ProviderError, committed: Committed) -> None:
        super().__init__(error.detail)
        self.error = error
        self.committed = committed
        self.attempts = committed.attempts


@dataclass
class Committed:
    """A stream that produced its first chunk. Iterate it for the first chunk and the rest."""

    plan: Plan
    attempt: AttemptRecord
    chain: _Chain
    first: Any
    _source: AsyncIterator[Any]
    _ends_at: float
    _closed: bool = field(default=False)

    @property
    def attempts(self) -> list[AttemptRecord]:
        return self.chain.attempts

    @property
    def can_restart(self) -> bool:
        """Whether the chain has an entry left to restart from, and time for it."""
        entries = self.chain.entries_after(self.attempt.index)
        return bool(entries) and any(self.chain.budget(plan) > 0 for _i, plan in entries)

    async def __aiter__(self):
        yield self.first
        sse.attempt.set(self.attempt)  # read on in this task: its undecodable events count on this attempt
        idle = self.plan.deadlines.idle
        try:
            while True:
                remaining = self._ends_at - time.monotonic()
                limit = min(remaining, idle) if idle else remaining
                try:
                    async with asyncio.timeout(max(limit, 0)):
                        chunk = await anext(self._source)
                except StopAsyncIteration:
                    break
                except (Exception, TimeoutError) as raw:
                    error = _typed(raw, self.plan)
                    if isinstance(raw, TimeoutError):
                        which = "idle" if idle and limit == idle else "attempt"
                        error = exc.Timeout(
                            f"the stream stalled (no chunk within the {which} deadline of {limit:g}s)",
                            provider_uid=self.plan.provider_uid, model=self.plan.model,
                        )
                    self.attempt.fail(error)
                    self.chain.errors.append(error)
                    await breaker.report(self.plan.provider_uid, self.plan.model, error)
                    requestlogs.note(outcome="error", error=error.describe())
                    raise StreamFailed(error, self) from None
                yield chunk
            self.attempt.succeed()
            requestlogs.note(outcome="done")
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the upstream stream (idempotent); an unfinished attempt is recorded as cancelled."""
        if not self._closed:
            self._closed = True
            self.attempt.cancel()
            # Bounded: the client's answer (an error line, a restart) must not wait on an upstream that
            # does not let go; its connection is dropped with the stream object then.
            with contextlib.suppress(Exception, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._source.aclose()


async def _open(chain: _Chain, plan: Plan, attempt: AttemptRecord, ends_at: float) -> Committed:
    """Start the stream and wait for its first chunk, which commits the attempt."""
    sse.attempt.set(attempt)  # this task's own context: the attempt's undecodable events count on it
    source = plan.stream()
    remaining = ends_at - time.monotonic()
    limit = min(remaining, plan.deadlines.first_chunk or remaining)
    try:
        async with asyncio.timeout(max(limit, 0)):
            first = await anext(source)
    except BaseException as raw:
        with contextlib.suppress(Exception):
            await source.aclose()
        if isinstance(raw, StopAsyncIteration):
            raise exc.Unavailable("the stream ended before its first chunk") from None
        if isinstance(raw, TimeoutError):
            raise exc.Timeout(f"no first chunk within {limit:g}s", provider_uid=plan.provider_uid,
                              model=plan.model) from None
        raise  # the provider's error goes to the retry policy; a cancellation ends the attempt
    attempt.chunk_arrived()
    first_chunk_times.observe(plan.provider_uid, plan.model, True, attempt.first_chunk_ms / 1000)
    return Committed(plan, attempt, chain, first, source, ends_at)


async def open_stream(plans: list[Plan], policy: Policy) -> Committed:
    """The first stream to produce a chunk; raises AllAttemptsFailed if none does.

    Parallel and hedged streams race to their first chunk; the losers are cancelled and closed.
    """
    chain = _Chain(plans, policy, streamed=True)
    return (await _chain(chain, chain.entries(), _open)).result


async def restart_stream(failed: StreamFailed) -> Committed:
    """After a committed stream broke: the next stream of the same chain to produce a first chunk,
    from the start of its answer (its own attempts join the chain's); AllAttemptsFailed if none does.

    Never a continuation of the partial answer (prefilled as an assistant turn): several models
    refuse prefill with a 400, which would hide the real failure.
    """
    committed = failed.committed
    return (await _chain(committed.chain, committed.chain.entries_after(committed.attempt.index), _open)).result
