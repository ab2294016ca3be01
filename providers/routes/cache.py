"""Routes as the hot path reads them: snapshots cached per name, no query while nothing changes.

A route saved or deleted in this process drops its entry at once (model signals); other replicas'
changes arrive through Redis (providers/invalidation.py) or, without it, once an entry is older than
QALBY_CONFIG_TTL, as for provider configs.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from providers import db, outage
from providers import exceptions as exc


@dataclass(frozen=True)
class EntrySnapshot:
    provider_uid: str
    model: str
    settings: dict[str, Any]
    first_chunk_timeout: float | None
    idle_timeout: float | None

    def limits(self) -> dict[str, Any]:
        """This entry's own stream deadlines, as a request body carries them (only those set)."""
        return {k: v for k in ("first_chunk_timeout", "idle_timeout") if (v := getattr(self, k)) is not None}


STREAM_FIELDS = ("first_chunk_timeout", "idle_timeout")  # a streamed kind's chain takes these too


@dataclass(frozen=True)
class RouteSnapshot:
    name: str
    kind: str
    version: int
    enabled: bool
    strategy: str
    timeout_per_request: float | None
    timeout_total: float | None
    first_chunk_timeout: float | None
    idle_timeout: float | None
    hedge_after: float | str | None
    on_stream_failure: str | None
    entries: tuple[EntrySnapshot, ...]

    def chain(self, entries: list[Any], *fields: str) -> dict[str, Any]:
        """The ``{"requests": [...], ...}`` body this route makes of its entries' requests: the fields every
        chain takes, and those of ``fields`` (STREAM_FIELDS, on_stream_failure) the kind's chain takes, if set."""
        body: dict[str, Any] = {"requests": entries, "strategy": self.strategy}
        for name in ("timeout_per_request", "timeout_total", "hedge_after", *fields):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return body


def _hedge(value: str) -> float | str | None:
    if not value:
        return None
    return value if value in ("auto", "off") else float(value)


def _read(name: str) -> RouteSnapshot | None:
    from providers.routes.models import Route

    route = Route.objects.filter(name=name).first()
    if route is None:
        return None
    entries = [EntrySnapshot(e.config.uid, e.model, dict(e.settings or {}), e.first_chunk_timeout, e.idle_timeout)
               for e in route.entries.select_related("config").order_by("position", "pk")]
    return RouteSnapshot(
        route.name, route.kind, route.version, route.enabled, route.strategy, route.timeout_per_request,
        route.timeout_total, route.first_chunk_timeout, route.idle_timeout, _hedge(route.hedge_after),
        route.on_stream_failure or None, tuple(entries),
    )


class RouteCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[RouteSnapshot | None, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def invalidate(self, name: str | None = None) -> None:
        if name is None:
            self._entries.clear()
        else:
            self._entries.pop(name, None)

    async def get(self, name: str) -> RouteSnapshot | None:
        cached = self._entries.get(name)
        if cached is not None and time.monotonic() - cached[1] < settings.QALBY_CONFIG_TTL:
            return cached[0]
        if cached is not None and outage.down() and outage.stands_in(cached[1], "route"):
            return cached[0]
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            cached = self._entries.get(name)
            if cached is not None and time.monotonic() - cached[1] < settings.QALBY_CONFIG_TTL:
                return cached[0]
            try:
                snapshot = await db.run(_read, name)
            except exc.DatabaseUnavailable:
                if cached is not None and outage.stands_in(cached[1], "route"):
                    return cached[0]
                self._locks.pop(name, None)
                raise outage.unavailable(f"the database is unavailable and this server has not read the route "
                                         f"'{name}' yet; retry in a few seconds") from None
            if snapshot is None:
                self._entries.pop(name, None)
                self._locks.pop(name, None)  # names come from clients: keep no state for unknown ones
            else:
                self._entries[name] = (snapshot, time.monotonic())
            return snapshot


routes = RouteCache()
outage.cache(lambda: len(routes._entries))


async def route_for(name: str, kind: str, principal: Any) -> RouteSnapshot:
    """The route ``name`` for a request of ``kind`` by ``principal``: 403 when the key may not use it,
    404 when there is none (or it is of another kind), 400 when it is disabled or empty."""
    allowed = getattr(principal, "routes", frozenset())
    if allowed and name not in allowed:
        raise exc.Forbidden(f"this client key may not use the route '{name}' (its routes: {', '.join(sorted(allowed))})")
    route = await routes.get(name)
    if route is None or route.kind != kind:
        raise exc.NotFound(f"no {kind} route named '{name}'")
    if not route.enabled:
        raise exc.InvalidInput(f"the route '{name}' is disabled")
    if not route.entries:
        raise exc.InvalidInput(f"the route '{name}' has no entries")
    return route


def check_direct(principal: Any) -> None:
    """403 for a key that may only use routes but named a provider config."""
    if not getattr(principal, "direct", True):
        raise exc.Forbidden("this client key may not name provider configs directly: send \"route\" instead")
