"""OpenAI: Chat Completions, Responses (with web search), speech and transcription.

The official SDK is given ``base_url(prefix)`` = ``<prefix>/v1`` and appends the paths itself.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.emulator.core import Emulator
from tests.emulator.openai_emu_audio import speech, transcriptions
from tests.emulator.openai_emu_chat import ChatDialect, chat_completions
from tests.emulator.openai_emu_responses import responses

PROVIDER = "openai"
MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-5", "gpt-4o-mini-tts", "tts-1", "whisper-1", "gpt-4o-transcribe")


def base_url(prefix: str) -> str:
    return prefix + "/v1"


def bind(handler, emu: Emulator, dialect: ChatDialect, **kwargs):
    """A Starlette endpoint calling ``handler(request, emu, dialect, **kwargs)``."""

    async def endpoint(request: Request) -> Response:
        return await handler(request, emu, dialect, **kwargs)

    return endpoint


def model_routes(
    emu: Emulator, dialect: ChatDialect, root: str, models: tuple[str, ...], owner: str
) -> list[Route]:
    """``GET /models`` and ``GET /models/{id}``, which clients use as a cheap health check."""

    def card(name: str) -> dict:
        return {"id": name, "object": "model", "created": 1715367049, "owned_by": owner}

    async def listing(request: Request) -> Response:
        return dialect.check_key(emu, request) or dialect.json(
            {"object": "list", "data": [card(m) for m in models]}
        )

    async def one(request: Request) -> Response:
        denied = dialect.check_key(emu, request)
        if denied:
            return denied
        name = request.path_params["name"]
        if name.split("~")[0] not in models:
            return dialect.error_response(404, dialect.status_error(404, name, None))
        return dialect.json(card(name))

    return [
        Route(f"{root}/models", listing, methods=["GET"]),
        Route(f"{root}/models/{{name:path}}", one, methods=["GET"]),
    ]


def unknown_route(dialect: ChatDialect):
    async def unknown(request: Request) -> Response:
        path = request.scope["path"][len(request.scope.get("root_path", "")) :]
        return dialect.error_response(404, dialect.unknown_url(request.method, path))

    return Route("/{rest:path}", unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])


def app(emu: Emulator) -> Starlette:
    dialect = ChatDialect()
    routes = [
        Route("/v1/chat/completions", bind(chat_completions, emu, dialect), methods=["POST"]),
        Route("/v1/responses", bind(responses, emu, dialect), methods=["POST"]),
        Route("/v1/audio/speech", bind(speech, emu, dialect), methods=["POST"]),
        Route("/v1/audio/transcriptions", bind(transcriptions, emu, dialect), methods=["POST"]),
        Route(
            "/v1/audio/translations", bind(transcriptions, emu, dialect, task="translate"), methods=["POST"]
        ),
        *model_routes(emu, dialect, "/v1", MODELS, "system"),
        unknown_route(dialect),
    ]
    return Starlette(routes=routes)
