"""Speech and transcription runs: client payload -> engine plans -> audio bytes or a transcript.

Every upload is checked (size, emptiness, audio mime type) before a plan is made, so a bad file
never reaches a provider.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from audio import routes
from audio.schemas import (
    Base64Audio,
    SpeakFallbackIn,
    SpeakIn,
    SpeakRouteIn,
    TranscribeFallbackIn,
    TranscribeFormIn,
    TranscribeGenIn,
    TranscribeIn,
    TranscribeRouteIn,
    audio_mime,
    check_filename,
)
from providers import exceptions as exc
from providers import fallback, requestlogs
from providers.adapters.audio import (
    AudioUpload,
    Speech,
    SpeechRequest,
    Transcription,
    TranscriptionRequest,
    TranscriptionResult,
    VoiceSettings,
)
from providers.planning import chain_of, plan_for, timeouts_for
from providers.routes.cache import check_direct

logger = logging.getLogger("qalby.audio")


# ---- speech -------------------------------------------------------------------------------------


def speech_request_of(item: SpeakIn) -> SpeechRequest:
    g = item.gen_config
    voice_settings = VoiceSettings(**g.voice_settings.model_dump()) if g.voice_settings else None
    return SpeechRequest(
        model=item.model, text=item.text, voice=item.voice, output_format=item.output_format, speed=g.speed,
        instructions=g.instructions, voice_settings=voice_settings, seed=g.seed, language_code=g.language_code,
        provider_options=dict(g.provider_options),
    )


async def _speech_plans(payload: SpeakIn | SpeakFallbackIn, *, streamed: bool):
    chain = chain_of(payload)
    plans = []
    for item in chain.entries:
        request = speech_request_of(item)
        plans.append(await plan_for(
            item.provider_uid, item.model, Speech, "synthesize speech", timeouts_for(payload, item),
            call=None if streamed else (lambda adapter, r=request: adapter.speak(r)),
            stream=(lambda adapter, r=request: adapter.speak_stream(r)) if streamed else None,
            provider_options=request.provider_options,
        ))
    return plans, chain


@dataclass
class Speaking:
    """Audio on its way to the client: whole (``audio``) or streamed (``chunks``), and who served it."""

    content_type: str
    provider_uid: str
    model: str
    attempts: list[fallback.AttemptRecord]
    audio: bytes = b""
    chunks: AsyncIterator[bytes] | None = None


def attempts_summary(attempts: list[fallback.AttemptRecord]) -> str:
    """The attempts in one header line: ``uid/model=status[:ErrorType], ...`` (the serving stream: ``streaming``)."""
    return fallback.attempts_line([{**a.public(), "status": "streaming" if a.status == "pending" else a.final_status}
                                   for a in sorted(attempts, key=lambda a: a.index)])


async def speech_run(payload: SpeakIn | SpeakFallbackIn | SpeakRouteIn, principal: Any = None) -> Speaking:
    """The whole audio of the first provider that produces it; AllAttemptsFailed otherwise.
    ``principal``: the calling client key, whose route rules apply (audio/routes.py)."""
    payload = await routes.resolve_speech(payload, principal)
    plans, chain = await _speech_plans(payload, streamed=False)
    outcome = await fallback.run(plans, chain.policy)
    return Speaking(
        outcome.result.content_type, outcome.attempt.provider_uid, outcome.attempt.model, outcome.attempts,
        audio=outcome.result.audio,
    )


async def speech_stream(payload: SpeakIn | SpeakFallbackIn | SpeakRouteIn, abort: Callable[[], None],
                        principal: Any = None) -> Speaking:
    """Opens the stream (AllAttemptsFailed if no provider sends audio), then its bytes as they come.

    A failure after the first byte cannot change the answer any more: it is logged, then ``abort``
    is called, which ends the response without its terminator so the client sees it truncated.
    """
    payload = await routes.resolve_speech(payload, principal)
    plans, chain = await _speech_plans(payload, streamed=True)
    committed = await fallback.open_stream(plans, chain.policy)
    characters = len(chain.entries[committed.attempt.index].text)
    return Speaking(
        committed.first.content_type, committed.attempt.provider_uid, committed.attempt.model,
        committed.attempts, chunks=_audio_bytes(committed, characters, abort),
    )


async def _audio_bytes(committed: fallback.Committed, characters: int,
                       abort: Callable[[], None]) -> AsyncIterator[bytes]:
    sent = 0
    try:
        async for chunk in committed:
            sent += len(chunk.data)
            yield chunk.data
    except fallback.StreamFailed as failure:
        logger.warning("speech stream broke after %d bytes, the response is cut: %s", sent,
                       failure.error.describe())
        abort()
    finally:
        await committed.aclose()
        requestlogs.note(characters=characters, audio_bytes=sent)  # the request log: what was actually sent


# ---- transcription ------------------------------------------------------------------------------


def _check_size(size: int) -> None:
    limit = settings.QALBY_MAX_AUDIO_BYTES
    if size > limit:
        raise exc.PayloadTooLarge(f"the audio file is {size} bytes; the limit is {limit} bytes")


def upload_of_base64(file: Base64Audio) -> AudioUpload:
    _check_size(len(file.data))
    return AudioUpload(file.name, file.data, file.mime_type, len(file.data))


def upload_of_form(upload: UploadedFile) -> AudioUpload:
    """A multipart upload, left where Django spooled it (memory when small, a temporary file
    otherwise): the SDKs read it from there in pieces as they send it."""
    _check_size(upload.size or 0)
    try:
        name = check_filename(upload.name or "")
        mime = audio_mime(upload.content_type, name)
    except ValueError as error:
        raise exc.InvalidInput(f"file: {error}") from None
    if not upload.size:
        raise exc.InvalidInput("file: the file is empty")
    return AudioUpload(name, upload.file, mime, upload.size)


def _transcription_request(model: str, file: AudioUpload, language: str | None,
                           gen: TranscribeGenIn | None) -> TranscriptionRequest:
    gen = gen or TranscribeGenIn()
    return TranscriptionRequest(
        model=model, file=file, language=language, prompt=gen.prompt, temperature=gen.temperature,
        timestamps=frozenset(gen.timestamp_granularities), provider_options=dict(gen.provider_options),
    )


async def _transcribe(payload: Any, requests: list[TranscriptionRequest], request_id: str) -> dict[str, Any]:
    """``requests``: one per entry of ``payload``'s chain, in order."""
    chain = chain_of(payload)
    plans = [
        await plan_for(entry.provider_uid, request.model, Transcription, "transcribe audio",
                       timeouts_for(payload, entry), call=lambda adapter, r=request: adapter.transcribe(r),
                       provider_options=request.provider_options)
        for entry, request in zip(chain.entries, requests, strict=True)
    ]
    outcome = await fallback.run(plans, chain.policy)
    return transcript_of(outcome.result, outcome, request_id)


def transcript_of(result: TranscriptionResult, outcome: fallback.Outcome, request_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "request_id": request_id, "text": result.text, "language": result.language, "duration": result.duration,
        "provider_uid": outcome.attempt.provider_uid, "model": outcome.attempt.model,
        "attempts": [a.public() for a in outcome.attempts],
    }
    # Only what was asked for and given: absent keys, not nulls, for clients that test for them.
    if result.segments is not None:
        answer["segments"] = [vars(s) for s in result.segments]
    if result.words is not None:
        answer["words"] = [vars(w) for w in result.words]
    return answer


async def transcribe_json(payload: TranscribeIn | TranscribeFallbackIn | TranscribeRouteIn, request_id: str,
                          principal: Any = None) -> dict[str, Any]:
    if isinstance(payload, TranscribeRouteIn):
        upload = upload_of_base64(payload.file)
        chain = await routes.transcription_chain(payload.route, principal, payload.language, payload.gen_config)
        return await _transcribe(chain, [_transcription_request(item.model, upload, item.language, item.gen_config)
                                         for item in chain.requests], request_id)
    check_direct(principal)
    if isinstance(payload, TranscribeIn):
        upload = upload_of_base64(payload.file)
        request = _transcription_request(payload.model, upload, payload.language, payload.gen_config)
        return await _transcribe(payload, [request], request_id)
    first = upload_of_base64(payload.requests[0].file)
    requests = []
    for item in payload.requests:
        upload = first if item.file is None else upload_of_base64(item.file)
        requests.append(_transcription_request(item.model, upload, item.language, item.gen_config))
    return await _transcribe(payload, requests, request_id)


_FORM_PARTS = {*TranscribeFormIn.model_fields, "file"}


async def transcribe_form(fields: TranscribeFormIn, upload: UploadedFile | None, parts: list[str],
                          request_id: str, principal: Any = None) -> dict[str, Any]:
    """A multipart request: ``parts`` names every part sent, so a misspelt field is refused, not ignored."""
    unknown = sorted(set(parts) - _FORM_PARTS)
    if unknown:
        raise exc.InvalidInput(f"{unknown[0]}: not a field of this form (it takes {', '.join(sorted(_FORM_PARTS))}; "
                               "fallback chains go to /audio/transcribe_json)")
    if upload is None:
        raise exc.InvalidInput("file: send the audio as a multipart part named 'file'")
    if fields.route is not None:
        chain = await routes.transcription_chain(fields.route, principal, fields.language, fields.gen_config)
        file = upload_of_form(upload)
        return await _transcribe(chain, [_transcription_request(item.model, file, item.language, item.gen_config)
                                         for item in chain.requests], request_id)
    check_direct(principal)
    request = _transcription_request(fields.model, upload_of_form(upload), fields.language, fields.gen_config)
    return await _transcribe(fields, [request], request_id)
