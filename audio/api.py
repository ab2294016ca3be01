from django.http import HttpResponse, StreamingHttpResponse
from ninja import Body, File, Form, Router
from ninja.files import UploadedFile

from audio import services
from audio.schemas import SpeakBody, TranscribeBody, TranscribeFormIn, TranscriptOut
from providers.auth import ClientKeyAuth
from providers.responses import abort_response

router = Router(tags=["audio"], auth=ClientKeyAuth("use"))


def _served_by(response: HttpResponse, speaking: services.Speaking) -> HttpResponse:
    response["X-Provider-UID"] = speaking.provider_uid
    response["X-Model"] = speaking.model
    response["X-Attempts"] = services.attempts_summary(speaking.attempts)
    return response


_AUDIO = {200: {
    "description": "The audio. X-Provider-UID and X-Model name who served it; X-Attempts lists every try.",
    "content": {media: {"schema": {"type": "string", "format": "binary"}}
                for media in ("audio/mpeg", "audio/wav", "audio/opus", "audio/aac", "audio/flac", "audio/pcm")},
}}


@router.post("/speak", openapi_extra={"responses": _AUDIO})
async def speak(request, payload: Body[SpeakBody]):
    """Text to speech, single or with fallbacks: the audio file of the provider that served it."""
    speaking = await services.speech_run(payload, request.auth)
    response = HttpResponse(speaking.audio, content_type=speaking.content_type)
    response["Content-Length"] = str(len(speaking.audio))
    return _served_by(response, speaking)


@router.post("/speak_stream", openapi_extra={"responses": _AUDIO})
async def speak_stream(request, payload: Body[SpeakBody]):
    """The same, streamed as the provider sends it. A failure after the first byte cuts the response
    (no chunked terminator), so clients see a truncated transfer, never a short file that looks whole."""
    speaking = await services.speech_stream(payload, abort=lambda: abort_response(request), principal=request.auth)
    response = StreamingHttpResponse(speaking.chunks, content_type=speaking.content_type)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies must pass audio through as it comes
    return _served_by(response, speaking)


@router.post("/transcribe", response=TranscriptOut, exclude_unset=True)
async def transcribe(request, fields: Form[TranscribeFormIn], file: File[UploadedFile] = None):
    """Speech to text from a multipart upload: one provider config and model, or a route."""
    parts = [*request.POST, *request.FILES]
    return await services.transcribe_form(fields, file, parts, request.request_id, request.auth)


@router.post("/transcribe_json", response=TranscriptOut, exclude_unset=True)
async def transcribe_json(request, payload: Body[TranscribeBody]):
    """Speech to text from a base64 file in JSON, single or with fallbacks."""
    return await services.transcribe_json(payload, request.request_id, request.auth)
