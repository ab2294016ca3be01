"""The circuit breaker: a provider config and model that keeps failing is skipped for a cooldown.

The policy, per provider config uid and model (``admit`` before an attempt, ``report`` after it):

- *closed*: attempts run. A counted failure (:func:`verdict`: a 5xx, a dropped connection, a
  timeout) lengthens the run; an answer from the provider (a success, a 4xx, a 429) ends it. A run
  of ``threshold`` counted failures (each within ``RUN_WINDOW`` seconds of the previous) opens it.
- *open*: for ``cooldown`` seconds ``admit`` refuses, with the reason; the engine records a
  ``skipped`` attempt and moves on, unless the entry is the last one left, which runs anyway.
- *half-open*: after the cooldown, the first ``admit`` takes the single probe slot and runs; the
  others are refused while it runs. Its answer closes the breaker, a counted failure opens it
  again. A probe that never reports (cancelled, its replica died) frees its slot after one cooldown.

A failure is counted per attempt (the engine's one retry on the same provider included in it).
Limits are the settings ``QALBY_BREAKER_THRESHOLD`` (0: never open) and ``QALBY_BREAKER_COOLDOWN``,
or a config's ``breaker_threshold`` / ``breaker_cooldown`` options.

State lives in Redis when ``REDIS_URL`` is set (shared by every replica: INCR with an expiry for the
run, SET NX PX for the probe slot, an absolute end of cooldown), else in this process. A Redis call
gives up after ``REDIS_TIMEOUT``; after an error this process uses its own state for
``REDIS_RETRY`` seconds before asking Redis again, and says so once per outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Literal

from django.conf import settings

from providers import exceptions as exc
from providers import invalidation

logger = logging.getLogger("qalby.breaker")

RUN_WINDOW = 60.0  # seconds: a failure later than this after the previous one starts a new run
KEEP = 3600.0  # seconds: a breaker nobody probes for this long after its cooldown is forgotten (closed)
REDIS_TIMEOUT = 0.25  # seconds: the longest a request waits for Redis
REDIS_RETRY = 5.0  # seconds: after a Redis error, how long to keep to this process's own state
LOCAL_MAX = 10_000  # in-process states kept at most (models come from clients)
PREFIX = "qalby:breaker"


@dataclass(frozen=True)
class Limits:
    threshold: int  # counted failures in a row that open the breaker; 0: never
    cooldown: float  # seconds open before a probe


def limits_for(uid: str) -> Limits:
    """The config's own options (from the adapter cache the plan was just built from), else the settings."""
    from providers.adapter_cache import adapters

    snapshot = adapters.cached(uid)
    options = snapshot.options if snapshot is not None else {}
    threshold = options.get("breaker_threshold")
    cooldown = options.get("breaker_cooldown")
    return Limits(settings.QALBY_BREAKER_THRESHOLD if threshold is None else int(threshold),
                  float(cooldown or settings.QALBY_BREAKER_COOLDOWN))


def verdict(error: exc.ProviderError | None) -> Literal["up", "down"] | None:
    """What an attempt's end says of the provider: ``down`` for a 5xx, a dropped connection or a
    timeout; ``up`` for a success or any answer it gave (a 4xx, a 429: it is there, the request or
    the quota is the problem); None for a refusal made before any call (disabled, unsupported)."""
    if error is None:
        return "up"
    if isinstance(error, exc.Timeout) or (isinstance(error, exc.Unavailable) and error.retryable):
        return "down"
    return "up" if error.upstream_status is not None else None


def _opened(uid: str, model: str, why: str, limits: Limits) -> None:
    from providers.requestlogs import metrics

    metrics.BREAKER_OPENS.labels(metrics._provider(uid)).inc()
    logger.warning("circuit breaker opened for %s/%s (%s); skipped for %gs", uid, model, why, limits.cooldown)


def _refusal(until: float, now: float) -> str:
    if now < until:
        return f"circuit breaker open after repeated failures; next probe in {until - now:.1f}s"
    return "circuit breaker half-open: a probe request is in flight"


# ---- in this process ----------------------------------------------------------------------------


@dataclass
class _State:
    fails: int = 0
    last_fail: float = 0.0
    until: float | None = None  # time.time() at which the cooldown ends; None: closed
    probe_until: float = 0.0


class LocalStore:
    def __init__(self) -> None:
        self.states: dict[tuple[str, str], _State] = {}

    async def admit(self, uid: str, model: str, limits: Limits) -> str | None:
        state = self.states.get((uid, model))
        if state is None or state.until is None:
            return None
        now = time.time()
        if now >= state.until + KEEP:
            del self.states[(uid, model)]
            return None
        if now >= state.until and now >= state.probe_until:
            state.probe_until = now + limits.cooldown
            return None
        return _refusal(state.until, now)

    async def report(self, uid: str, model: str, limits: Limits, down: bool) -> None:
        key = (uid, model)
        if not down:
            self.states.pop(key, None)
            return
        now = time.time()
        state = self.states.get(key)
        if state is None:
            if len(self.states) >= LOCAL_MAX:
                self.states.pop(next(iter(self.states)))
            state = self.states[key] = _State()
        state.fails = state.fails + 1 if now - state.last_fail <= RUN_WINDOW else 1
        state.last_fail = now
        if state.until is not None and now >= state.until:
            why = "the probe failed"
        elif state.until is None and state.fails >= limits.threshold:
            why = f"{state.fails} failures in a row"
        else:
            return
        state.until, state.fails, state.probe_until = now + limits.cooldown, 0, 0.0
        _opened(uid, model, why, limits)

    def states_of(self, uids: list[str]) -> dict[str, dict[str, float]]:
        found: dict[str, dict[str, float]] = {}
        for (uid, model), state in list(self.states.items()):
            if uid in uids and state.until is not None:
                found.setdefault(uid, {})[model] = state.until
        return found


# ---- in Redis, shared by the replicas -------------------------------------------------------------


def _keys(uid: str, model: str) -> tuple[str, str, str, str]:
    base = f"{PREFIX}:{uid}:{model}"
    return f"{base}:fails", f"{base}:until", f"{base}:probe", f"{PREFIX}:open:{uid}"


class RedisStore:
    def __init__(self) -> None:
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # one per event loop

    def _client(self):
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = invalidation._client(REDIS_TIMEOUT, asynchronous=True)
        return client

    async def admit(self, uid: str, model: str, limits: Limits) -> str | None:
        redis = self._client()
        _fails, until_key, probe_key, _open = _keys(uid, model)
        until = await redis.get(until_key)
        if until is None:
            return None
        now = time.time()
        if now >= float(until) and await redis.set(probe_key, "1", nx=True, px=int(limits.cooldown * 1000)):
            return None
        return _refusal(float(until), now)

    async def report(self, uid: str, model: str, limits: Limits, down: bool) -> None:
        fails_key, until_key, probe_key, open_key = _keys(uid, model)
        redis = self._client()
        if not down:
            async with redis.pipeline(transaction=False) as pipe:
                await pipe.delete(fails_key, until_key, probe_key).hdel(open_key, model).execute()
            return
        async with redis.pipeline(transaction=False) as pipe:
            fails, _, until = await pipe.incr(fails_key).pexpire(fails_key, int(RUN_WINDOW * 1000)).get(
                until_key).execute()
        now = time.time()
        if until is not None and now >= float(until):
            why = "the probe failed"
        elif until is None and fails >= limits.threshold:
            why = f"{fails} failures in a row"
        else:
            return
        ends = now + limits.cooldown
        keep = int((limits.cooldown + KEEP) * 1000)
        async with redis.pipeline(transaction=False) as pipe:
            await (pipe.set(until_key, repr(ends), px=keep).delete(fails_key, probe_key)
                   .hset(open_key, model, repr(ends)).pexpire(open_key, keep).execute())
        _opened(uid, model, why, limits)

    def states_of(self, uids: list[str]) -> dict[str, dict[str, float]]:
        client = invalidation._client(REDIS_TIMEOUT)
        try:
            with client.pipeline(transaction=False) as pipe:
                for uid in uids:
                    pipe.hgetall(f"{PREFIX}:open:{uid}")
                rows = pipe.execute()
        finally:
            client.close()
        return {uid: {m.decode(): float(u) for m, u in row.items()} for uid, row in zip(uids, rows, strict=True) if row}


# ---- the one the engine asks ----------------------------------------------------------------------


class Breaker:
    def __init__(self) -> None:
        self.local = LocalStore()
        self.redis = RedisStore()
        self._redis_back_at = 0.0  # monotonic: until then, Redis failed and this process decides alone
        self._alone = False

    def _shared(self) -> bool:
        return bool(settings.REDIS_URL) and time.monotonic() >= self._redis_back_at

    def _lost(self, error: BaseException) -> None:
        self._redis_back_at = time.monotonic() + REDIS_RETRY
        if not self._alone:
            self._alone = True
            logger.warning("Redis unreachable (%s): circuit breakers use this replica's own state until it answers",
                           type(error).__name__)

    async def _run(self, method: str, *args):
        if self._shared():
            try:
                result = await getattr(self.redis, method)(*args)
            except Exception as error:  # redis errors, OSError, timeouts: serve on, alone
                self._lost(error)
            else:
                if self._alone:
                    self._alone = False
                    logger.warning("Redis answers again: circuit breakers are shared again")
                return result
        return await getattr(self.local, method)(*args)

    async def admit(self, uid: str, model: str) -> str | None:
        """None if an attempt on ``uid``/``model`` may run now, else why not (the breaker is open)."""
        limits = limits_for(uid)
        if limits.threshold <= 0:
            return None
        return await self._run("admit", uid, model, limits)

    async def report(self, uid: str, model: str, error: exc.ProviderError | None) -> None:
        """An attempt ended: with ``error`` (typed) or None for a success."""
        limits = limits_for(uid)
        seen = verdict(error)
        if limits.threshold <= 0 or seen is None:
            return
        await self._run("report", uid, model, limits, seen == "down")

    def states(self, uids: list[str]) -> dict[str, list[tuple[str, str, float]]]:
        """For the admin: per config uid, its breakers that are not closed, as (model, state, seconds left)."""
        found = None
        if self._shared():
            try:
                found = self.redis.states_of(uids)
            except Exception as error:
                self._lost(error)
        if found is None:
            found = self.local.states_of(uids)
        now = time.time()
        return {
            uid: sorted((model, "open" if now < until else "half-open", max(until - now, 0.0))
                        for model, until in models.items() if now < until + KEEP)
            for uid, models in found.items()
        }

    def reset(self) -> None:
        """Forget this process's state (tests)."""
        self.local.states.clear()
        self._redis_back_at, self._alone = 0.0, False


breaker = Breaker()


def describe(states: list[tuple[str, str, float]]) -> str:
    """One line for the admin: ``closed``, or each model's state."""
    if not states:
        return "closed"
    return "; ".join(f"{model}: {state}" + (f" ({left:.0f}s left)" if state == "open" else "")
                     for model, state, left in states)
