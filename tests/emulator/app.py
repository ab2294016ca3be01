"""The emulator's ASGI application: every provider mounted under its own prefix on one port."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from tests.emulator.core import CutStream, Emulator, Recorded, abort_connection, now, redact_headers

# provider name -> module. Each module defines PROVIDER, app(emu) -> ASGI app, base_url(root) -> str
# (what the provider's SDK takes as base URL), and optionally lifespan(emu) -> async context manager.
MODULES = {
    "openai": "tests.emulator.openai_emu",
    "anthropic": "tests.emulator.anthropic_emu",
    "google": "tests.emulator.google_emu",
    "groq": "tests.emulator.groq_emu",
    "elevenlabs": "tests.emulator.elevenlabs_emu",
    "mcp": "tests.emulator.mcp_emu",
}


def available_modules() -> dict[str, Any]:
    found = {}
    for name, dotted in MODULES.items():
        try:
            found[name] = importlib.import_module(dotted)
        except ModuleNotFoundError as exc:
            if exc.name != dotted:
                raise
    return found


class Recording:
    """Records each request (secrets redacted), then replays its body to the provider app."""

    def __init__(self, provider: str, app: Any, emu: Emulator) -> None:
        self.provider, self.app, self.emu = provider, app, emu

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        arrived = now()
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        scope["emulator.body"] = body  # the raw body, for the echo fault's message
        record = Recorded(
            provider=self.provider,
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=redact_headers(scope["headers"]),
            body=body,
            at=arrived,
        )
        self.emu.requests.append(record)
        replayed = False
        complete = False

        def hung_up() -> None:
            if not complete and record.disconnected_at is None:
                record.disconnected_at = now()

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            message = await receive()
            if message["type"] == "http.disconnect":
                hung_up()
            return message

        # A real provider stops working on a request whose client hung up: so does the emulator,
        # and the record says when, so tests can prove the proxy closed its upstream connection.

        async def tracking_send(message):
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, replay, tracking_send))

        async def watch():
            while (await receive())["type"] != "http.disconnect":
                pass
            if not complete:
                hung_up()
                handler.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await handler
        except asyncio.CancelledError:
            if record.disconnected_at is None:
                raise
        finally:
            watcher.cancel()


class EmulatorApp:
    def __init__(self, emu: Emulator | None = None) -> None:
        self.emu = emu or Emulator()
        self.modules = available_modules()
        routes = [
            Route("/_emulator/requests", self._requests, methods=["GET"]),
            Route("/_emulator/reset", self._reset, methods=["POST"]),
        ]
        for name, module in self.modules.items():
            routes.append(Mount(f"/{name}", app=Recording(name, module.app(self.emu), self.emu)))
        self.inner = Starlette(routes=routes, lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app):
        async with contextlib.AsyncExitStack() as stack:
            for module in self.modules.values():
                if hasattr(module, "lifespan"):
                    await stack.enter_async_context(module.lifespan(self.emu))
            yield

    def base_urls(self, root: str) -> dict[str, str]:
        return {name: module.base_url(f"{root}/{name}") for name, module in self.modules.items()}

    async def _requests(self, request: Request) -> JSONResponse:
        provider = request.query_params.get("provider")
        return JSONResponse([r.as_dict() for r in self.emu.recorded(provider)])

    async def _reset(self, request: Request) -> JSONResponse:
        self.emu.reset()
        return JSONResponse({"ok": True})

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            # Kept for abort_connection(): the server's own send, before any middleware wraps it.
            scope["emulator.raw_send"] = send
            try:
                await self.inner(scope, receive, send)
            except CutStream:
                abort_connection(scope)
            return
        await self.inner(scope, receive, send)


__all__ = ["EmulatorApp", "Recorded"]
