"""A provider that echoes the request, its key included, in an error: the key still never gets out.

Some real providers quote what they received in an error message. The emulator's ``echo`` fault
(``m~echo``, ``m~echo500``) does so in each provider's own error shape: the headers (the key's
header first), the query string and the start of the body. Whatever the proxy passes on from that
text (the client's answer, whole or streamed, single or in a chain; the request log and its
attempts; the server log; the trace) must hold neither the key nor a long piece of it. Each test
also checks that the echo did arrive (the echoed request line and the key's header name are in the
error the client got), so none can pass because nothing was echoed.
"""

import json

import pytest
from asgiref.sync import sync_to_async

from providers.models import RequestLog
from providers.requestlogs.batching import writer
from tests.agent.helpers import chain, single, stream
from tests.audio.helpers import speak, transcribe, wav_file
from tests.conftest import CHAT_PROVIDERS

pytestmark = pytest.mark.django_db(transaction=True)

ECHOED = "echoed request: POST /"  # what the emulator's echo says before the request's path
# The headers each provider's SDK may send its key in, as the echo names them.
BEARER = "authorization: Bearer "
KEY_HEADERS = {
    "openai": (BEARER,),
    "groq": (BEARER,),
    "anthropic": ("x-api-key: ", BEARER),
    "google": ("x-goog-api-key: ", "?key="),
    # "xi-api-key" starts like an ElevenLabs key ("xi-"), so the proxy's scrubber hides the name too
    "elevenlabs": ("xi-api-key: ", "[redacted]: [redacted]", BEARER),
}
OTHER = {"openai": "groq", "groq": "anthropic", "anthropic": "google", "google": "openai", "elevenlabs": "openai"}
PIECE = 10  # no run of this many characters of a key may show
WAV = wav_file(0.2)
SPEECH_PROVIDERS = ["openai", "elevenlabs"]
STT_MODELS = {"openai": "whisper-1", "groq": "whisper-large-v3", "elevenlabs": "scribe_v1"}


def assert_no_key(text: str, key: str, where: str) -> None:
    assert key not in text, f"the provider key leaked into {where}"
    pieces = {key[i : i + PIECE] for i in range(len(key) - PIECE + 1)}
    shown = sorted(piece for piece in pieces if piece in text)
    assert not shown, f"pieces of the provider key leaked into {where}: {shown}"


def assert_echoed(text: str, provider: str) -> None:
    """The echo reached the client: without it, a clean answer would prove nothing."""
    assert ECHOED in text, f"no echo from {provider} in: {text[:500]}"
    assert any(h in text for h in KEY_HEADERS[provider]), f"{provider}'s echo does not show its key: {text[:500]}"
    # the key's header comes first, so the next one proves the echo was not cut before the key
    assert "; host: 127.0.0.1:" in text, f"{provider}'s echo is cut short: {text[:500]}"


def answer_of(response) -> str:
    """All the client got: status line, headers and body (audio bytes read as text)."""
    return f"{response.status_code} {dict(response.headers)} {response.content.decode('utf-8', 'replace')}"


def row_text(row) -> str:
    return json.dumps({f.name: str(getattr(row, f.attname)) for f in row._meta.concrete_fields})


@sync_to_async
def logged(request_id: str) -> str:
    """Every field of the request's log row and of its attempt rows, once the writer has written them."""
    assert writer.flush(10), "the request log was not written"
    log = RequestLog.objects.prefetch_related("attempts").get(request_id=request_id)
    assert log.attempts.exists()
    return "\n".join([row_text(log), *(row_text(a) for a in log.attempts.all())])


async def assert_kept_secret(
    emulator, provider: str, answer: str, request_id: str, captured_logs, spans, *, echo_shown: bool = True
) -> None:
    """``answer`` is what the client got (headers and body); ``echo_shown``: its body quotes the error."""
    key = emulator.keys[provider]
    assert any(r.provider == provider for r in emulator.recorded()), f"{provider} was never called"
    if echo_shown:
        assert_echoed(answer, provider)
    assert_no_key(answer, key, "the client's answer")
    log = await logged(request_id)
    assert_echoed(log, provider)  # the echo was logged too, scrubbed
    assert_no_key(log, key, "the request log")
    assert_no_key(captured_logs.text, key, "the server log")
    finished = spans.get_finished_spans()
    assert finished, "no trace was recorded"
    trace = json.dumps([
        {"name": s.name, "attributes": dict(s.attributes), "status": s.status.description,
         "events": [(e.name, dict(e.attributes)) for e in s.events]}
        for s in finished
    ], default=str)
    assert ECHOED in trace  # the failed attempt's error is in its span
    assert_no_key(trace, key, "the trace")


# ---- chat: /agent/run and /agent/run_stream ----------------------------------------------------------


@pytest.mark.parametrize("fault", ["echo", "echo500"])
@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_chat_alone(user, configs, emulator, captured_logs, spans, provider, fault):
    response = await user.post("/agent/run", json=single(provider, model=f"m~{fault}"))
    assert response.status_code == (400 if fault == "echo" else 502), response.text
    await assert_kept_secret(emulator, provider, answer_of(response), response.headers["X-Request-ID"], captured_logs, spans)


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_chat_in_a_fallback_chain(user, configs, emulator, captured_logs, spans, provider):
    other = OTHER[provider]
    response = await user.post("/agent/run", json=chain(single(provider, model="m~echo"), single(other, model="ok")))
    assert response.status_code == 200, response.text
    assert [a["status"] for a in response.json()["attempts"]] == ["error", "ok"]
    await assert_kept_secret(emulator, provider, answer_of(response), response.headers["X-Request-ID"], captured_logs, spans)


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_chat_stream_alone_and_in_a_chain(user, configs, emulator, captured_logs, spans, provider):
    status, lines, headers = await stream(user, single(provider, model="m~echo"))
    assert status == 400, lines
    await assert_kept_secret(emulator, provider, f"{dict(headers)} {json.dumps(lines)}", headers["X-Request-ID"], captured_logs, spans)

    status, lines, headers = await stream(user, chain(single(provider, model="m~echo"), single(OTHER[provider])))
    assert status == 200 and lines[-1]["type"] == "done", lines
    await assert_kept_secret(emulator, provider, f"{dict(headers)} {json.dumps(lines)}", headers["X-Request-ID"], captured_logs, spans)


# ---- chat: the OpenAI-compatible entry point ---------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_v1_chat_completions(user, configs, emulator, captured_logs, spans, provider, streamed):
    body = {"model": f"{provider}/m~echo", "messages": [{"role": "user", "content": "hello there"}], "stream": streamed}
    async with user.stream("POST", "/v1/chat/completions", json=body) as response:
        answer = f"{dict(response.headers)} {(await response.aread()).decode()}"
    assert response.status_code == 400, answer
    await assert_kept_secret(emulator, provider, answer, response.headers["X-Request-ID"], captured_logs, spans)


# ---- audio: speech and transcription ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/audio/speak", "/audio/speak_stream"])
@pytest.mark.parametrize("provider", SPEECH_PROVIDERS)
async def test_speech_alone_and_in_a_chain(user, configs, emulator, captured_logs, spans, provider, path):
    model = f"{speak(provider)['model']}~echo"
    response = await user.post(path, json=speak(provider, model=model))
    assert response.status_code == 400, response.text
    await assert_kept_secret(emulator, provider, answer_of(response), response.headers["X-Request-ID"], captured_logs, spans)

    other = "elevenlabs" if provider == "openai" else "openai"
    response = await user.post(path, json=chain(speak(provider, model=model), speak(other)))
    assert response.status_code == 200 and response.headers["X-Provider-UID"] == other
    assert response.headers["X-Attempts"].startswith(f"{provider}/{model}=error:BadRequest")
    # A served speech answer is audio, which quotes no error: the echo is checked in the log.
    await assert_kept_secret(emulator, provider, answer_of(response), response.headers["X-Request-ID"],
                             captured_logs, spans, echo_shown=False)


@pytest.mark.parametrize("provider", STT_MODELS)
async def test_transcription_alone_and_in_a_chain(user, configs, emulator, captured_logs, spans, provider):
    model = f"{STT_MODELS[provider]}~echo"
    response = await user.post("/audio/transcribe_json", json=transcribe(provider, model, WAV))
    assert response.status_code == 400, response.text
    await assert_kept_secret(emulator, provider, answer_of(response), response.headers["X-Request-ID"], captured_logs, spans)

    other = OTHER[provider] if OTHER[provider] in STT_MODELS else "openai"
    body = chain(transcribe(provider, model, WAV), transcribe(other, STT_MODELS[other]))
    response = await user.post("/audio/transcribe_json", json=body)
    assert response.status_code == 200, response.text
    assert [a["status"] for a in response.json()["attempts"]] == ["error", "ok"]
    await assert_kept_secret(emulator, provider, answer_of(response), response.headers["X-Request-ID"], captured_logs, spans)
