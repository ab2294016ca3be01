"""What the app owning each route kind tells providers about it (providers knows no app).

``agent`` registers ``chat``, ``audio`` registers ``speech`` and ``transcription``, from their
AppConfig.ready: the capability an entry's provider must offer, and how an entry's settings are
checked (by validating a sample request of that app, so a route can hold nothing a request could not).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


@dataclass(frozen=True)
class RouteKind:
    capability: str  # registry capability an entry's provider must offer: chat, speech, transcription
    check: Callable[[str, str, dict[str, Any]], None]  # (provider_uid, model, settings); ValueError when invalid


_kinds: dict[str, RouteKind] = {}


def register(name: str, kind: RouteKind) -> None:
    _kinds[name] = kind


def get(name: str) -> RouteKind | None:
    return _kinds.get(name)


def first_error(error: ValidationError) -> str:
    """A pydantic error as one line naming its field: what a route check or expansion reports."""
    item = error.errors()[0]
    where = ".".join(str(part) for part in item.get("loc", ()))
    return f"{where}: {item.get('msg', 'invalid')}" if where else item.get("msg", "invalid")
