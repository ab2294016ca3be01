"""State replicas share through Redis (when REDIS_URL is set): which cached things changed.

A replica that saves a provider config or a client key publishes it; every replica (this one
included) drops its cached copy at once. Without Redis, or while it is unreachable, caches expire
on their own (QALBY_CONFIG_TTL, CLIENT_KEY_CACHE_SECONDS): Redis makes changes immediate, it is
never needed for them to happen.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

logger = logging.getLogger("qalby.invalidation")

CHANNEL = "qalby:invalidate"
_publisher = None
_listener: threading.Thread | None = None
_lock = threading.Lock()


def _client(timeout: float = 2, asynchronous: bool = False):
    """A client of REDIS_URL (redis.asyncio's for the request path) whose calls give up after ``timeout`` seconds."""
    if asynchronous:
        from redis import asyncio as redis
    else:
        import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout)


def publish(kind: str, key: str) -> None:
    """Tell every replica that ``kind`` ``key`` changed (best effort: caches expire anyway)."""
    global _publisher
    if not settings.REDIS_URL:
        return
    try:
        if _publisher is None:
            _publisher = _client()
        _publisher.publish(CHANNEL, f"{kind}:{key}")
    except Exception as exc:  # Redis down: the TTLs bound how stale other replicas get
        logger.warning("could not publish a %s change to Redis (%s)", kind, type(exc).__name__)


def _apply(message: str) -> None:
    from providers import auth
    from providers.adapter_cache import adapters
    from providers.routes.cache import routes

    kind, _, key = message.partition(":")
    if kind == "config":
        adapters.invalidate(key)
        routes.invalidate()
    elif kind == "route":
        routes.invalidate(key)
    elif kind == "clientkey":
        auth.clear_cache()


def _forget_everything() -> None:
    from providers import auth
    from providers.adapter_cache import adapters
    from providers.routes.cache import routes

    adapters.invalidate()
    auth.clear_cache()
    routes.invalidate()


def _listen() -> None:
    backoff = 0.5
    while True:
        try:
            pubsub = _client().pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(CHANNEL)
            backoff = 0.5
            # Everything may have changed while we were not listening.
            _forget_everything()
            for message in pubsub.listen():
                if message.get("type") == "message":
                    _apply(message["data"].decode())
        except Exception as exc:
            logger.warning("Redis invalidation listener disconnected (%s); retrying", type(exc).__name__)
            time.sleep(backoff)
            backoff = min(backoff * 2, 10)


def start_listener() -> None:
    """Start (once per process) the thread that applies other replicas' changes."""
    global _listener
    if not settings.REDIS_URL:
        return
    with _lock:
        if _listener is None or not _listener.is_alive():
            _listener = threading.Thread(target=_listen, name="qalby-invalidation", daemon=True)
            _listener.start()
