"""Speech and transcription routes: how an entry's settings are checked when a route is saved, and
how a route request becomes the chain the engine runs (providers/routes has the tables and key rules)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from audio.schemas import (
    SpeakFallbackIn,
    SpeakIn,
    SpeakRouteIn,
    TranscribeFallbackIn,
    TranscribeGenIn,
    TranscribeItemIn,
)
from providers import exceptions as exc
from providers import requestlogs
from providers.routes.cache import STREAM_FIELDS, RouteSnapshot, check_direct, route_for
from providers.routes.kinds import RouteKind, first_error

SPEECH_SETTINGS = {"voice", "output_format", "gen_config"}
TRANSCRIPTION_SETTINGS = {"language", "gen_config"}


def _only(settings: dict[str, Any], accepted: set[str], kind: str) -> None:
    unknown = sorted(set(settings) - accepted)
    if unknown:
        raise ValueError(f"not a {kind} entry setting: {', '.join(unknown)} (accepted: {', '.join(sorted(accepted))})")


def check_speech(provider_uid: str, model: str, settings: dict[str, Any]) -> None:
    _only(settings, SPEECH_SETTINGS, "speech")
    try:
        SpeakIn.model_validate({"provider_uid": provider_uid, "model": model, "text": "-", **settings})
    except ValidationError as error:
        raise ValueError(first_error(error)) from None


def check_transcription(provider_uid: str, model: str, settings: dict[str, Any]) -> None:
    _only(settings, TRANSCRIPTION_SETTINGS, "transcription")
    try:
        TranscribeItemIn.model_validate({"provider_uid": provider_uid, "model": model, **settings})
    except ValidationError as error:
        raise ValueError(first_error(error)) from None


SPEECH = RouteKind("speech", check_speech)
TRANSCRIPTION = RouteKind("transcription", check_transcription)


def _noted(route: RouteSnapshot) -> RouteSnapshot:
    requestlogs.note(route=route.name, route_version=route.version)
    return route


async def resolve_speech(payload: Any, principal: Any) -> Any:
    """The chain a speech request stands for (agent/routes.py does the same for chats)."""
    if not isinstance(payload, SpeakRouteIn):
        check_direct(principal)
        return payload
    route = _noted(await route_for(payload.route, "speech", principal))
    try:
        requests = [SpeakIn.model_validate({
            "provider_uid": e.provider_uid, "model": e.model, "text": payload.text, **e.settings, **e.limits(),
            **({"output_format": payload.output_format} if payload.output_format else {}),
        }) for e in route.entries]
        return SpeakFallbackIn.model_validate(route.chain(requests, *STREAM_FIELDS))
    except ValidationError as error:
        raise exc.InvalidInput(f"route '{route.name}': {first_error(error)}") from None


async def transcription_chain(route_name: str, principal: Any, language: str | None,
                              gen_config: TranscribeGenIn | None) -> TranscribeFallbackIn:
    """A transcription route's chain, without the file: the caller holds the upload (base64 or multipart)
    and sends it to every entry."""
    route = _noted(await route_for(route_name, "transcription", principal))
    asked = gen_config.model_dump(exclude_unset=True) if gen_config else {}
    try:
        requests = []
        for e in route.entries:
            item = {"provider_uid": e.provider_uid, "model": e.model, **e.settings,
                    "gen_config": {**e.settings.get("gen_config", {}), **asked}}
            if language:
                item["language"] = language
            requests.append(TranscribeItemIn.model_validate(item))
    except ValidationError as error:
        raise exc.InvalidInput(f"route '{route.name}': {first_error(error)}") from None
    # Built, not validated: the rule that a chain's first request carries the file does not apply here.
    defaults = {name: field.get_default(call_default_factory=True)
                for name, field in TranscribeFallbackIn.model_fields.items() if name != "requests"}
    return TranscribeFallbackIn.model_construct(**{**defaults, **route.chain(requests)})
