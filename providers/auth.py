"""Client API keys: ``Authorization: Bearer qpk_<prefix>_<secret>``.

Authentication runs on every request, so a verified key is cached in process for a short
time; a change to a key (disable, delete, new scopes) clears the cache through a model
signal, and other processes see it within CLIENT_KEY_CACHE_SECONDS.
"""

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from ninja.security import HttpBearer

from providers.exceptions import MissingScope
from providers.models import ClientKey

TOKEN_PREFIX = "qpk"
LAST_USED_RESOLUTION = timedelta(minutes=1)


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

    @property
    def label(self) -> str:
        return f"{self.name} ({self.prefix})"


_cache: dict[str, tuple[float, Principal | None]] = {}
_touch_tasks: set[asyncio.Task] = set()
_last_touched: dict[int, datetime] = {}


def clear_cache() -> None:
    _cache.clear()


async def _lookup(token: str) -> Principal | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    key = await ClientKey.objects.filter(prefix=parts[1], enabled=True).afirst()
    if key is None or not hmac.compare_digest(key.secret_hash, hash_token(token)):
        return None
    return Principal(key.pk, key.name, key.prefix, frozenset(key.scopes), key.expires_at)


async def authenticate(token: str) -> Principal | None:
    digest = hash_token(token)
    hit = _cache.get(digest)
    now = time.monotonic()
    if hit is None or hit[0] < now:
        principal = await _lookup(token)
        if len(_cache) > 10_000:  # bounded even under a flood of wrong tokens
            _cache.clear()
        _cache[digest] = (now + settings.CLIENT_KEY_CACHE_SECONDS, principal)
    else:
        principal = hit[1]
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
    task = asyncio.get_running_loop().create_task(
        ClientKey.objects.filter(pk=key_id).aupdate(last_used_at=now)
    )
    _touch_tasks.add(task)
    task.add_done_callback(_touch_tasks.discard)


class ClientKeyAuth(HttpBearer):
    """Ninja auth: 401 without a valid key, 403 when the key lacks ``scope``."""

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope

    def __call__(self, request):
        # Ninja's own parser logs a malformed header verbatim in DEBUG, which may be a secret.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.authenticate(request, token.strip())

    async def authenticate(self, request, token: str) -> Principal | None:
        principal = await authenticate(token)
        if principal is not None and self.scope not in principal.scopes:
            raise MissingScope(f"this API key lacks the '{self.scope}' scope")
        return principal
