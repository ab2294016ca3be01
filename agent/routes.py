"""Chat routes: how an entry's settings are checked when a route is saved, and how a route request
becomes the chain the engine runs (providers/routes has the tables, the cache and the key rules)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from agent.schemas import ChatIn, ChatRouteIn, FallbackIn
from providers import exceptions as exc
from providers import requestlogs
from providers.routes.cache import STREAM_FIELDS, EntrySnapshot, check_direct, route_for
from providers.routes.kinds import RouteKind, first_error

SETTINGS = {"gen_config"}  # what an entry of a chat route may hold besides its provider and model


def check(provider_uid: str, model: str, settings: dict[str, Any]) -> None:
    unknown = sorted(set(settings) - SETTINGS)
    if unknown:
        raise ValueError(f"not a chat entry setting: {', '.join(unknown)} (accepted: {', '.join(sorted(SETTINGS))})")
    try:
        ChatIn.model_validate({"provider_uid": provider_uid, "model": model,
                               "messages": [{"role": "user", "content": "-"}], **settings})
    except ValidationError as error:
        raise ValueError(first_error(error)) from None


KIND = RouteKind("chat", check)


async def route_chain(name: str, principal: Any,
                      entry: Callable[[EntrySnapshot], Awaitable[dict[str, Any]]]) -> FallbackIn:
    """The chain of the chat route ``name`` (the key's route rules applied): each entry's request is
    ``await entry(snapshot)`` (the caller's messages, tools and settings for that entry), with the
    entry's own stream deadlines; the route's strategy and deadlines around them. Logged with its version."""
    route = await route_for(name, "chat", principal)
    try:
        requests = [ChatIn.model_validate({**await entry(e), **e.limits()}) for e in route.entries]
        chain = FallbackIn.model_validate(route.chain(requests, *STREAM_FIELDS, "on_stream_failure"))
    except ValidationError as error:
        raise exc.InvalidInput(f"route '{route.name}': {first_error(error)}") from None
    requestlogs.note(route=route.name, route_version=route.version)
    return chain


async def resolve(payload: Any, principal: Any) -> ChatIn | FallbackIn:
    """The chain a request stands for: a route's, expanded (the key must be allowed it), or the
    request itself (the key must be allowed to name provider configs). ``principal`` None: the
    caller applied the key's rules itself (the /v1 API, agent/v1_services.py)."""
    if not isinstance(payload, ChatRouteIn):
        check_direct(principal)
        return payload
    asked = payload.gen_config.model_dump(exclude_unset=True) if payload.gen_config else {}

    async def entry(e: EntrySnapshot) -> dict[str, Any]:
        # Already validated messages and tools are passed as they are (pydantic does not re-validate them).
        return {"provider_uid": e.provider_uid, "model": e.model, "messages": payload.messages,
                "tools": payload.tools, "gen_config": {**e.settings.get("gen_config", {}), **asked}}

    chain = await route_chain(payload.route, principal, entry)
    return chain.model_copy(update={"restart_after_tools": payload.restart_after_tools})
