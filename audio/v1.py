"""OpenAI's audio endpoints under ``/v1/audio``: speech and transcriptions in OpenAI's formats, over
our routes (a name without a slash) or one provider config (``provider_uid/model``).

Errors come in OpenAI's shape like every ``/v1`` answer (qalby_site/api.py). Speech is streamed as
the provider sends it (a failure after the first byte cuts the transfer, as ``/audio/speak_stream``).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from ninja import Body, File, Form, Router
from ninja.files import UploadedFile
from pydantic import Field, ValidationError

from audio import services
from audio.schemas import SpeakIn, SpeakRouteIn, TranscribeFormIn
from providers import exceptions as exc
from providers.auth import ClientKeyAuth
from providers.fallback import attempts_line
from providers.responses import abort_response
from providers.routes.kinds import first_error
from providers.schemas import Strict

router = Router(tags=["openai-compatible"], auth=ClientKeyAuth("use"))


class SpeechIn(Strict):
    """OpenAI's ``POST /audio/speech`` body."""

    model: str = Field(min_length=1, max_length=265, description="A speech route, or provider_uid/model")
    input: str = Field(min_length=1, max_length=100_000)
    voice: str | dict[str, str] = Field(description="Used with provider_uid/model; a route's entries have their own")
    response_format: str | None = Field(None, pattern=r"^[a-z0-9_]{2,32}$")
    speed: float | None = Field(None, ge=0.25, le=4.0)
    instructions: str | None = Field(None, max_length=4096)
    stream_format: Literal["audio"] | None = Field(None, description="Only `audio` (raw bytes as they come)")


def _split(model: str) -> tuple[str, str] | None:
    """``provider_uid/model`` as its two parts; None for a route name."""
    provider_uid, slash, name = model.partition("/")
    return (provider_uid, name) if slash else None


def _valid(schema: type, body: dict[str, Any]) -> Any:
    try:
        return schema.model_validate(body)
    except ValidationError as error:
        raise exc.InvalidInput(first_error(error)) from None


@router.post("/speech")
async def speech(request, payload: Body[SpeechIn]):
    """Text to speech, in OpenAI's format: the audio bytes (X-Qalby-Attempts lists the attempts)."""
    direct = _split(payload.model)
    if direct is None:
        body = _valid(SpeakRouteIn, {"route": payload.model, "text": payload.input,
                                     "output_format": payload.response_format})
    else:
        voice = payload.voice["id"] if isinstance(payload.voice, dict) and "id" in payload.voice else payload.voice
        gen = {k: v for k, v in (("speed", payload.speed), ("instructions", payload.instructions)) if v is not None}
        body = _valid(SpeakIn, {"provider_uid": direct[0], "model": direct[1], "text": payload.input, "voice": voice,
                                "output_format": payload.response_format or "mp3", "gen_config": gen})
    speaking = await services.speech_stream(body, abort=lambda: abort_response(request), principal=request.auth)
    response = StreamingHttpResponse(speaking.chunks, content_type=speaking.content_type)
    response["X-Qalby-Attempts"] = services.attempts_summary(speaking.attempts)
    return response


class TranscriptionForm(Strict):
    """OpenAI's ``POST /audio/transcriptions`` form fields (the file aside)."""

    model: str = Field(min_length=1, max_length=265, description="A transcription route, or provider_uid/model")
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    response_format: Literal["json", "text", "verbose_json"] = "json"


_PARTS = {*TranscriptionForm.model_fields, "file", "timestamp_granularities[]", "timestamp_granularities"}


@router.post("/transcriptions")
async def transcriptions(request, fields: Form[TranscriptionForm], file: File[UploadedFile] = None):
    """Speech to text, in OpenAI's format (``json``, ``text`` or ``verbose_json``)."""
    unknown = sorted(set(request.POST) - _PARTS)
    if unknown:
        raise exc.InvalidInput(f"{unknown[0]}: not supported here (accepted: {', '.join(sorted(_PARTS))})")
    granularities = request.POST.getlist("timestamp_granularities[]") or request.POST.getlist("timestamp_granularities")
    gen = {k: v for k, v in (("prompt", fields.prompt), ("temperature", fields.temperature),
                             ("timestamp_granularities", granularities or None)) if v is not None}
    direct = _split(fields.model)
    target = {"route": fields.model} if direct is None else {"provider_uid": direct[0], "model": direct[1]}
    form = _valid(TranscribeFormIn, {**target, "language": fields.language,
                                     "gen_config": json.dumps(gen) if gen else None})
    answer = await services.transcribe_form(form, file, ["file"] if file else [], request.request_id, request.auth)
    if fields.response_format == "text":
        response = HttpResponse(answer["text"], content_type="text/plain; charset=utf-8")
    elif fields.response_format == "verbose_json":
        verbose = {"task": "transcribe", "language": answer["language"], "duration": answer["duration"],
                   "text": answer["text"]}
        if "segments" in answer:
            verbose["segments"] = [{"id": i, **s} for i, s in enumerate(answer["segments"])]
        if "words" in answer:
            verbose["words"] = answer["words"]
        response = JsonResponse(verbose)
    else:
        response = JsonResponse({"text": answer["text"]})
    response["X-Qalby-Attempts"] = attempts_line(answer["attempts"])
    return response
