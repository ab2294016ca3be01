"""ElevenLabs emulator: text to speech (whole and streamed), voices, models, speech to text.

Wire notes (elevenlabs 2.78.0, wire-formats.md §7): the SDK's base URL has no ``/v1``; it sends
``xi-api-key``; TTS answers are raw audio bytes the SDK never type-checks, and the SDK never retries
TTS (it is a streamed call). Order of checks, as the real API: validation (422) before the key,
then the key, then the fault named in ``model_id``, then model, voice and output format.
Catalogs, bodies and the deterministic audio live in elevenlabs_emu_wire.py.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.emulator.core import (
    CutStream,
    Emulator,
    Fault,
    FaultSyntaxError,
    abort_connection,
    echo_message,
    echo_requested,
    paced,
    wait_forever,
    words,
)
from tests.emulator.elevenlabs_emu_wire import (
    DEFAULT_OUTPUT_FORMAT,
    DEFAULT_TTS_MODEL,
    FAULT_ERRORS,
    OUTPUT_FORMATS,
    STT_MODELS,
    TTS_MODELS,
    VOICE_IDS,
    VOICES,
    content_type,
    error,
    model_json,
    problem,
    synthesize,
    transcript,
    tts_problems,
    validation_error,
    voice_json,
    voice_not_found,
)

PROVIDER = "elevenlabs"
CHUNK = 1024  # bytes per streamed audio chunk

__all__ = ["CHUNK", "PROVIDER", "app", "base_url", "synthesize"]


def base_url(prefix: str) -> str:
    return prefix  # AsyncElevenLabs(base_url=...) appends "v1/..." itself


def _form_value(form: Any, name: str) -> str | None:
    """A multipart text field; the SDK sends unset JSON-typed fields as the literal string "null"."""
    value = form.get(name)
    if not isinstance(value, str) or value in ("", "null"):
        return None
    return value


def _too_long(length: int, limit: int) -> Response:
    message = (
        f"This request's text has {length} characters and exceeds the character limit of {limit} characters."
    )
    return error(400, "validation_error", "text_too_long", "max_character_limit_exceeded", message)


async def _audio_body(fault: Fault, chunks: list[bytes]) -> AsyncIterator[bytes]:
    try:
        async for chunk in paced(fault, chunks, malformed=b""):
            yield chunk
        if fault.nodone:
            # A raw byte stream's only terminator is the end of the body: close the connection before it.
            raise CutStream("audio stream closed without its terminator")
    except CutStream:
        # A reset can discard bytes still in flight: give the client a moment to receive what was sent.
        await asyncio.sleep(0.05)
        raise


async def _dropped(scope: dict[str, Any]) -> Response:
    abort_connection(scope)
    await asyncio.sleep(0.01)  # let the server notice the loss, so the response below goes nowhere
    return Response(status_code=500)


class ElevenLabs:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    def _auth(self, request: Request, *, optional: bool = False) -> Response | None:
        key = request.headers.get("xi-api-key")
        auth = request.headers.get("authorization", "")
        if key is None and auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        if key is None:
            if optional:  # the voice and model lists answer without a key
                return None
            message = "Neither authorization header nor xi-api-key received, please provide one."
            return error(401, "authentication_error", "unauthorized", "needs_authorization", message)
        if key != self.emu.keys[PROVIDER]:
            message = echo_message(request.scope) if echo_requested(request.scope) else "Invalid API key"
            return error(401, "authentication_error", "unauthorized", "invalid_api_key", message)
        return None

    async def _fault(self, request: Request, model: str, length: int) -> tuple[str, Fault, Response | None]:
        """The base model and its fault; the response is set when the fault decides the answer."""
        try:
            base, fault = self.emu.fault(PROVIDER, model)
        except FaultSyntaxError as exc:
            return (
                model,
                Fault(),
                error(400, "invalid_request", "model_not_found", "model_not_found", str(exc)),
            )
        if fault.latency:
            await asyncio.sleep(fault.latency)
        if fault.reset:
            return base, fault, await _dropped(request.scope)
        if fault.hang:
            await wait_forever()
        if fault.kind == "context_length":
            limit = TTS_MODELS.get(base, 10000)
            return base, fault, _too_long(max(length, limit + 1), limit)
        if fault.kind == "content_policy":
            message = "Your prompt appears to have violated our Terms of Service. Please try again with a different prompt."
            return base, fault, error(400, "invalid_request", "bad_prompt", "bad_prompt", message)
        if fault.status is not None:
            generic = (
                "invalid_request" if fault.status < 500 else "internal_error",
                "error",
                "error",
                "Request failed.",
            )
            type_, code, legacy, message = FAULT_ERRORS.get(fault.status, generic)
            if fault.echo:
                message = echo_message(request.scope)
            headers = {}
            if fault.retry_after is not None:
                # The SDK reads retry-after-ms first, but its parser compares a str to an int and
                # silently falls back to retry-after, which it accepts only as whole seconds.
                headers = {
                    "retry-after": f"{fault.retry_after:g}",
                    "retry-after-ms": str(int(fault.retry_after * 1000)),
                }
            return base, fault, error(fault.status, type_, code, legacy, message, headers)
        return base, replace(fault, latency=0.0), None

    async def text_to_speech(self, request: Request) -> Response:
        voice_id = request.path_params["voice_id"]
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return validation_error(
                [problem("json_invalid", ["body", 0], "JSON decode error", {}, error=str(exc))]
            )
        if problems := tts_problems(body):
            return validation_error(problems)
        if denied := self._auth(request):
            return denied
        text = body["text"]
        base, fault, answer = await self._fault(request, body.get("model_id") or DEFAULT_TTS_MODEL, len(text))
        if answer is not None:
            return answer
        if base not in TTS_MODELS:
            message = f"A model with model ID {base} does not exist."
            return error(400, "invalid_request", "model_not_found", "model_not_found", message)
        if len(text) > TTS_MODELS[base]:
            return _too_long(len(text), TTS_MODELS[base])
        if voice_id not in VOICE_IDS:
            return voice_not_found(voice_id)
        output_format = request.query_params.get("output_format") or DEFAULT_OUTPUT_FORMAT
        if output_format not in OUTPUT_FORMATS:
            message = f"Invalid output format: {output_format}."
            return error(400, "validation_error", "invalid_output_format", "invalid_output_format", message)
        audio = synthesize(
            text,
            voice_id,
            base,
            output_format,
            voice_settings=body.get("voice_settings"),
            language_code=body.get("language_code"),
            seed=body.get("seed"),
            tokens=fault.tokens,
        )
        headers = {"request-id": uuid.uuid4().hex, "character-cost": str(len(text))}
        chunks = [audio[i : i + CHUNK] for i in range(0, len(audio), CHUNK)]
        fault = replace(fault, bad=None)  # raw audio has no event syntax to break
        if not request.url.path.endswith("/stream"):
            if fault.slow:
                await asyncio.sleep(fault.slow)
                fault = replace(fault, slow=0.0)
            if fault.cut is None and fault.stall is None and not fault.gap and not fault.nodone:
                return Response(audio, media_type=content_type(output_format), headers=headers)
            # A whole-file answer declares its length, so a cut shows as a short body.
            headers["content-length"] = str(len(audio))
        return StreamingResponse(
            _audio_body(fault, chunks), media_type=content_type(output_format), headers=headers
        )

    async def speech_to_text(self, request: Request) -> Response:
        form = await request.form()
        model = _form_value(form, "model_id")
        if model is None:
            return validation_error([problem("missing", ["body", "model_id"], "Field required")])
        if denied := self._auth(request):
            return denied
        base, fault, answer = await self._fault(request, model, 0)
        if answer is not None:
            return answer
        if not base.startswith("scribe_"):
            message = (
                f"Model '{base}' cannot be used for speech to text. Valid models: {', '.join(STT_MODELS)}."
            )
            return error(400, "invalid_request", "unsupported_model", "invalid_model", message)
        upload = form.get("file")
        source = _form_value(form, "cloud_storage_url") or _form_value(form, "source_url")
        if upload is None or isinstance(upload, str):
            if source is None:
                message = "Must provide either file or cloud_storage_url parameter."
                return error(400, "invalid_request", "invalid_parameters", "invalid_parameters", message)
            name, size = source, 0
        else:
            name, size = upload.filename or "upload", len(await upload.read())
        if fault.slow:
            await asyncio.sleep(fault.slow)
        language = _form_value(form, "language_code")
        text = f"transcript of {name} ({size} bytes) [model={base} language={language or '-'}]"
        if fault.tokens:
            text += " " + " ".join(words(fault.tokens, name))
        return JSONResponse(transcript(text, language, size))

    async def voices(self, request: Request) -> Response:
        if denied := self._auth(request, optional=True):
            return denied
        return JSONResponse({"voices": [voice_json(voice) for voice in VOICES]})

    async def voice(self, request: Request) -> Response:
        if denied := self._auth(request, optional=True):
            return denied
        voice_id = request.path_params["voice_id"]
        found = [voice for voice in VOICES if voice[0] == voice_id]
        return JSONResponse(voice_json(found[0])) if found else voice_not_found(voice_id)

    async def search_voices(self, request: Request) -> Response:
        """``GET /v2/voices``: search over name, labels and category, paged by an offset token."""
        if denied := self._auth(request, optional=True):
            return denied
        query = request.query_params
        wanted = (query.get("search") or "").lower()
        if query.get("category") not in (None, "premade"):
            found = []
        else:
            found = [voice for voice in VOICES if wanted in " ".join(voice[1:]).lower() + " premade"]
        size = min(int(query.get("page_size") or 10), 100)
        start = int(query.get("next_page_token") or 0)
        more = start + size < len(found)
        return JSONResponse(
            {
                "voices": [voice_json(voice) for voice in found[start : start + size]],
                "has_more": more,
                "total_count": len(found),
                "next_page_token": str(start + size) if more else None,
            }
        )

    async def models(self, request: Request) -> Response:
        if denied := self._auth(request, optional=True):
            return denied
        return JSONResponse([model_json(model, limit) for model, limit in TTS_MODELS.items()])


async def _http_error(request: Request, exc: Exception) -> Response:
    # Unknown paths and wrong methods answer as the real (FastAPI) server does: {"detail": "Not Found"}.
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)


def app(emu: Emulator) -> Starlette:
    eleven = ElevenLabs(emu)
    return Starlette(
        exception_handlers={HTTPException: _http_error},
        routes=[
            Route("/v1/text-to-speech/{voice_id}", eleven.text_to_speech, methods=["POST"]),
            Route("/v1/text-to-speech/{voice_id}/stream", eleven.text_to_speech, methods=["POST"]),
            Route("/v1/speech-to-text", eleven.speech_to_text, methods=["POST"]),
            Route("/v1/voices", eleven.voices, methods=["GET"]),
            Route("/v1/voices/{voice_id}", eleven.voice, methods=["GET"]),
            Route("/v2/voices", eleven.search_voices, methods=["GET"]),
            Route("/v1/models", eleven.models, methods=["GET"]),
        ],
    )
