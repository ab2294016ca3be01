"""Client API keys: ``Authorization: Bearer qpk_<prefix>_<secret>``.

Authentication runs on every request, so verified keys are cached in process. How stale a cached
answer can be is bounded by CLIENT_KEY_CACHE_SECONDS:

- A change made in this process (admin, API, management command) clears the cache through a model
  signal; with Redis, every replica clears it too.
- Without Redis (or when its message is lost), a key is never accepted on the strength of a database
  read older than CLIENT_KEY_CACHE_SECONDS. Keys in use are re-read in the background, all in one
  query, once they are half that old, so the request path itself makes no query while a key is
  busy; an idle key is looked up again on its next use.

Wrong tokens are remembered in a cache of their own: a flood of them cannot push out valid keys.
"""

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from ninja.security import HttpBearer

from providers import db, outage
from providers.exceptions import DatabaseUnavailable, MissingScope
from providers.models import SCOPES, ClientKey

logger = logging.getLogger("qalby.auth")

TOKEN_PREFIX = "qpk"
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Far more keys than a deployment has; only a valid token adds to the first, anyone can add to the second.
MAX_VALID_ENTRIES = 10_000
MAX_INVALID_ENTRIES = 10_000


def make_token() -> tuple[str, str, str]:
    """A new token and what is stored of it: (token, prefix, sha256 of the token)."""
    prefix = secrets.token_hex(4)
    token = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return token, prefix, hash_token(token)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a plain digest is enough; no slow KDF needed on the hot path.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a snapshot of the client key, safe to cache and to log (no secret)."""

    key_id: int
    name: str
    prefix: str
    scopes: frozenset[str]
    expires_at: datetime | None
    routes: frozenset[str] = frozenset()  # the routes it may use; empty: every route
    direct: bool = True  # whether it may name provider configs instead of a route


@dataclass(frozen=True)
class _Valid:
    principal: Principal
    secret_hash: str
    read_at: float  # monotonic time the database read began: the entry's age counts from there


# token digest -> a key verified against the database / the time a wrong token stops being remembered
_valid: dict[str, _Valid] = {}
_invalid: dict[str, float] = {}
outage.cache(lambda: len(_valid))
# Bumped by every clear: a database read that began before a clear must not store what it read.
_generation = 0
_refresh_task: asyncio.Task | None = None
_touch_tasks: set[asyncio.Task] = set()
_last_touched: dict[int, datetime] = {}


def clear_cache() -> None:
    """Forget every cached answer (a key changed here or, through Redis, on another replica)."""
    global _generation
    _generation += 1
    _valid.clear()
    _invalid.clear()


def _split(token: str) -> str | None:
    """The token's prefix, or None when it cannot be a client key (no query is spent on it)."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


def _principal(key: ClientKey) -> Principal:
    return Principal(key.pk, key.name, key.prefix, frozenset(key.scopes), key.expires_at,
                     frozenset(key.routes or ()), key.direct)


def _remember(table: dict, digest: str, value, limit: int) -> None:
    # Oldest first out (dicts keep insertion order): bounded without a sweep.
    table.pop(digest, None)
    while len(table) >= limit:
        table.pop(next(iter(table)), None)
    table[digest] = value


async def _lookup(token: str, digest: str) -> Principal | None:
    prefix = _split(token)
    if prefix is None:
        return None
    generation, read_at = _generation, time.monotonic()
    key = await db.run(lambda: ClientKey.objects.filter(prefix=prefix, enabled=True).first())
    valid = key is not None and hmac.compare_digest(key.secret_hash, digest)
    if generation == _generation:
        if valid:
            _invalid.pop(digest, None)
            _remember(_valid, digest, _Valid(_principal(key), key.secret_hash, read_at), MAX_VALID_ENTRIES)
        else:
            _valid.pop(digest, None)
            _remember(_invalid, digest, read_at + settings.CLIENT_KEY_CACHE_SECONDS, MAX_INVALID_ENTRIES)
    return _principal(key) if valid else None


async def _refresh() -> None:
    """Re-read every cached key past half its lifetime, in one query, off the request path."""
    ttl = settings.CLIENT_KEY_CACHE_SECONDS
    generation, read_at = _generation, time.monotonic()
    due = {digest: entry for digest, entry in list(_valid.items()) if read_at - entry.read_at >= ttl / 2}
    if not due:
        return
    ids = {entry.principal.key_id for entry in due.values()}
    try:
        rows = await db.run(lambda: {key.pk: key for key in ClientKey.objects.filter(pk__in=ids, enabled=True)})
    except DatabaseUnavailable:  # logged once per outage (providers/outage.py); the entries stand in meanwhile
        return
    except DatabaseError as exc:  # the entries age out, and requests look their keys up themselves
        logger.warning("could not re-check cached client keys (%s)", type(exc).__name__)
        return
    if generation != _generation:
        return
    for digest, entry in due.items():
        if _valid.get(digest) is not entry:
            continue  # looked up again meanwhile, or gone: that is the newer answer
        key = rows.get(entry.principal.key_id)
        if key is None or key.secret_hash != entry.secret_hash:
            _valid.pop(digest, None)  # disabled, deleted or replaced since it was cached
        else:
            _valid[digest] = replace(entry, principal=_principal(key), read_at=read_at)


def _refresh_soon() -> None:
    global _refresh_task
    loop = asyncio.get_running_loop()
    task = _refresh_task
    # A task of another (finished) event loop would never complete: only a live one here counts.
    if task is None or task.done() or task.get_loop() is not loop:
        _refresh_task = loop.create_task(_refresh())


async def authenticate(token: str) -> Principal | None:
    digest = hash_token(token)
    now = time.monotonic()
    ttl = settings.CLIENT_KEY_CACHE_SECONDS
    entry = _valid.get(digest)
    if entry is not None and now - entry.read_at < ttl:
        principal = entry.principal
        if now - entry.read_at >= ttl / 2:
            _refresh_soon()
    elif _invalid.get(digest, 0.0) > now:
        return None
    elif entry is not None and outage.down() and outage.stands_in(entry.read_at, "client_key"):
        principal = entry.principal  # no wait for a database that just failed
    else:
        try:
            principal = await _lookup(token, digest)
        except DatabaseUnavailable:
            if not outage.stands_in(entry and entry.read_at, "client_key"):
                raise outage.unavailable("the database is unavailable and this server has not verified this "
                                         "API key yet; retry in a few seconds") from None
            principal = entry.principal
    if principal is None or (principal.expires_at and principal.expires_at <= timezone.now()):
        return None
    _touch(principal.key_id)
    return principal


def _touch(key_id: int) -> None:
    """Record last use at most once a minute per key, off the request path."""
    now = timezone.now()
    last = _last_touched.get(key_id)
    if last and now - last < LAST_USED_RESOLUTION:
        return
    _last_touched[key_id] = now
    task = asyncio.get_running_loop().create_task(_record_use(key_id, now))
    _touch_tasks.add(task)
    task.add_done_callback(_touch_tasks.discard)


async def _record_use(key_id: int, when) -> None:
    # Best effort: a use not recorded during a database outage is recorded by the next one after it.
    try:
        await db.run(ClientKey.objects.filter(pk=key_id).update, last_used_at=when)
    except DatabaseUnavailable:
        _last_touched.pop(key_id, None)
    except DatabaseError as error:
        logger.warning("could not record the last use of a client key (%s)", type(error).__name__)


def bearer_token(request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None. Parsed here rather than by Ninja,
    whose parser logs a malformed header verbatim in DEBUG, which may be a secret."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class ClientKeyAuth(HttpBearer):
    """Ninja auth: 401 without a valid key, 403 when the key lacks ``scope``."""

    def __init__(self, scope: str) -> None:
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r} (one of {', '.join(SCOPES)})")
        super().__init__()
        self.scope = scope

    def __call__(self, request):
        token = bearer_token(request)
        return None if token is None else self.authenticate(request, token)

    async def authenticate(self, request, token: str) -> Principal | None:
        principal = await authenticate(token)
        if principal is not None and self.scope not in principal.scopes:
            raise MissingScope(f"this API key lacks the '{self.scope}' scope")
        return principal
