"""From a request body to engine plans: the chain (entries, strategy, deadlines) every endpoint shares,
each entry's provider config and adapter, its deadlines, its capability and provider_options checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from providers import exceptions as exc
from providers import registry, requestlogs
from providers.adapter_cache import adapters
from providers.adapters.options import ConfigSnapshot
from providers.fallback import Deadlines, Plan, Policy


@dataclass(frozen=True)
class Timeouts:
    """What the client asked for; None falls back to the provider config, then to settings."""

    attempt: float | None = None
    first_chunk: float | None = None
    idle: float | None = None


@dataclass(frozen=True)
class Chain:
    """A request body as the engine sees it: its entries (the one request, or the chain's) and how
    the engine runs them (strategy, deadline of the whole chain, refusals it moves on after, hedge)."""

    entries: list[Any]
    policy: Policy


def chain_of(payload: Any) -> Chain:
    """Every endpoint takes one request or ``{"requests": [...], "strategy", "timeout_total", ...}``."""
    requests = getattr(payload, "requests", None)
    if requests is None:
        return Chain([payload], Policy())
    return Chain(list(requests), Policy(payload.strategy, payload.timeout_total, frozenset(payload.fallback_on),
                                        payload.hedge_after))


def timeouts_for(payload: Any, entry: Any) -> Timeouts:
    """An entry's deadlines: its own stream deadlines first, then the chain's."""
    return Timeouts(
        attempt=getattr(payload, "timeout_per_request", None),
        first_chunk=getattr(entry, "first_chunk_timeout", None) or getattr(payload, "first_chunk_timeout", None),
        idle=getattr(entry, "idle_timeout", None) or getattr(payload, "idle_timeout", None),
    )


def deadlines_for(snapshot: ConfigSnapshot, asked: Timeouts) -> Deadlines:
    options = snapshot.options
    return Deadlines(
        attempt=asked.attempt or options.get("timeout") or settings.QALBY_ATTEMPT_TIMEOUT,
        first_chunk=asked.first_chunk or options.get("first_chunk_timeout") or settings.QALBY_FIRST_CHUNK_TIMEOUT,
        idle=asked.idle or options.get("idle_timeout") or settings.QALBY_IDLE_TIMEOUT,
    )


def _note_usage(result: Any) -> None:
    """Results and final chunks that report usage put it in the request log."""
    usage = getattr(result, "usage", None)
    if usage is not None:
        requestlogs.note(**{k: v for k, v in vars(usage).items() if v is not None})


def _check_provider_options(snapshot: ConfigSnapshot, capability: type, keys: Iterable[str]) -> None:
    allowed = registry.accepted_options(snapshot.provider, capability.__name__.lower())
    refused = sorted(set(keys) - allowed)
    if refused:
        raise exc.InvalidInput(
            f"provider_options for '{snapshot.uid}' ({snapshot.provider}, {capability.__name__.lower()}): "
            f"not accepted: {', '.join(refused)}; accepted: {', '.join(sorted(allowed)) or 'none'}"
        )


async def plan_for(
    provider_uid: str,
    model: str,
    capability: type,
    verb: str,
    timeouts: Timeouts,
    *,
    call: Callable[[Any], Awaitable[Any]] | None = None,
    stream: Callable[[Any], AsyncIterator[Any]] | None = None,
    provider_options: Iterable[str] = (),
) -> Plan:
    """A plan whose call/stream take the config's adapter. Before anything runs, an unknown uid is
    NotFound and a ``provider_options`` key the provider's allow-list lacks is InvalidInput.

    A disabled config or an adapter without ``capability`` fails as an attempt, so a fallback moves on.
    """
    snapshot, adapter = await adapters.get(provider_uid)
    _check_provider_options(snapshot, capability, provider_options)

    def check() -> None:
        if not snapshot.enabled:
            raise exc.ProviderDisabled("this provider config is disabled", provider_uid=provider_uid, model=model)
        if adapter is None:
            raise exc.Unavailable(
                "the stored API key of this config cannot be decrypted with this server's QALBY_ENCRYPTION_KEYS",
                provider_uid=provider_uid, model=model, retryable=False,
            )
        if not isinstance(adapter, capability):
            raise exc.Unsupported(
                f"'{provider_uid}' is {registry.config_of(snapshot.provider)}, which cannot {verb} "
                f"(the providers that can: {', '.join(registry.offering(capability.__name__.lower()))})",
                provider_uid=provider_uid, model=model,
            )

    async def guarded_call():
        check()
        result = await call(adapter)
        _note_usage(result)
        return result

    async def guarded_stream():
        check()
        async for chunk in stream(adapter):
            _note_usage(chunk)
            yield chunk

    return Plan(
        provider_uid=provider_uid,
        model=model,
        deadlines=deadlines_for(snapshot, timeouts),
        map_error=lambda error: adapter.map_error(error, model) if hasattr(adapter, "map_error") else None,
        call=guarded_call if call else None,
        stream=guarded_stream if stream else None,
        hedge=snapshot.options.get("hedge_after"),
    )
