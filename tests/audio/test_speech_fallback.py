"""The fallback engine's rules on speech, through the HTTP API, with the emulator's fault models.

A whole file (/audio/speak) may fall over at any point before it is sent; a stream
(/audio/speak_stream) only before its first audio byte: after it, a failure cuts the response.
"""

import time

import httpx
import pytest

from tests.agent.helpers import eventually
from tests.audio.helpers import RACHEL, chain, read_stream, speak, statuses
from tests.emulator.elevenlabs_emu_wire import synthesize
from tests.emulator.openai_emu_audio import speech_bytes

pytestmark = pytest.mark.django_db(transaction=True)

PATHS = ["/audio/speak", "/audio/speak_stream"]
PROVIDERS = ["openai", "elevenlabs"]
OTHER = {"openai": "elevenlabs", "elevenlabs": "openai"}
LONG_TEXT = " ".join(["word"] * 12)  # several chunks of audio from either provider


def hits(emulator, provider, model):
    return [r for r in emulator.recorded(provider) if f'"{model}"'.encode() in r.body]


def audio_of(provider: str, model: str, text: str = "hello there") -> bytes:
    base = model.split("~")[0]
    if provider == "openai":
        return speech_bytes(text, "alloy", base, "mp3")
    return synthesize(text, RACHEL, base, "mp3_44100_128")


async def post(user, path, body):
    """(status, body bytes, headers) for either endpoint; a stream must arrive whole."""
    status, content, headers, error = await read_stream(user, path, body)
    assert error is None, error
    return status, content, headers


# ---- sequential and parallel ---------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_sequential_moves_on_after_a_failure(user, configs, emulator, provider, path):
    other = OTHER[provider]
    first = speak(provider, model=speak(provider)["model"] + "~e500")
    status, audio, headers = await post(user, path, chain(first, speak(other)))
    assert status == 200
    assert audio == audio_of(other, speak(other)["model"])
    assert headers["X-Provider-UID"] == other
    served = "ok" if path == "/audio/speak" else "streaming"
    assert headers["X-Attempts"] == f"{provider}/{first['model']}=error:Unavailable, {other}/{speak(other)['model']}={served}"


async def test_parallel_whole_speech_first_done_wins_and_the_rest_are_cancelled(user, configs, emulator):
    body = chain(speak("openai", model="tts-1~lat30000"), speak("elevenlabs"), strategy="parallel")
    started = time.monotonic()
    response = await user.post("/audio/speak", json=body)
    assert response.status_code == 200
    assert time.monotonic() - started < 8  # far from the slow one's 30 s
    assert response.headers["X-Provider-UID"] == "elevenlabs"
    assert "openai/tts-1~lat30000=cancelled" in response.headers["X-Attempts"]
    assert await eventually(lambda: emulator.recorded("openai")[0].disconnected_at is not None)


@pytest.mark.parametrize("slow", PROVIDERS)
async def test_parallel_streams_race_to_the_first_audio_byte(user, configs, emulator, slow):
    fast = OTHER[slow]
    loser = speak(slow, model=speak(slow)["model"] + "~slow30")
    if slow == "elevenlabs":
        loser["voice"] = RACHEL  # by id: its request is on the wire at once, not after a voice lookup
    body = chain(loser, speak(fast), strategy="parallel")
    started = time.monotonic()
    status, audio, headers = await post(user, "/audio/speak_stream", body)
    assert status == 200 and time.monotonic() - started < 8  # far from the loser's 30 s
    assert headers["X-Provider-UID"] == fast
    assert audio == audio_of(fast, speak(fast)["model"])
    # The loser's request may not have left before the winner's first byte (then it never does); if
    # it reached the provider, its connection was closed.
    for upstream in [r for r in emulator.recorded(slow) if b"~slow2" in r.body]:
        assert await eventually(lambda upstream=upstream: upstream.disconnected_at is not None)


async def test_the_race_is_to_the_first_byte_not_to_the_whole_file(user, configs, emulator):
    # OpenAI starts at once but takes ~1 s in all; ElevenLabs starts after 0.4 s and is quick after.
    body = chain(speak("openai", model="tts-1~gap40", text=LONG_TEXT),
                 speak("elevenlabs", model="eleven_multilingual_v2~slow0.4", text=LONG_TEXT), strategy="parallel")
    status, audio, headers = await post(user, "/audio/speak_stream", body)
    assert status == 200 and headers["X-Provider-UID"] == "openai"
    assert audio == audio_of("openai", "tts-1", LONG_TEXT)
    assert "elevenlabs/eleven_multilingual_v2~slow0.4=cancelled" in headers["X-Attempts"]


# ---- retries on the same provider ----------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault", ["e503x1", "resetx1"])
async def test_a_5xx_or_a_reset_before_any_byte_is_retried_once(user, configs, emulator, provider, path, fault):
    model = f"{speak(provider)['model']}~{fault}"
    status, audio, headers = await post(user, path, speak(provider, model=model))
    assert status == 200
    assert audio == audio_of(provider, model)
    assert len(hits(emulator, provider, model)) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_persistent_5xx_is_retried_only_once(user, configs, emulator, provider):
    model = f"{speak(provider)['model']}~e503"
    response = await user.post("/audio/speak", json=speak(provider, model=model))
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    assert len(hits(emulator, provider, model)) == 2
    assert provider in response.json()["detail"] and model in response.json()["detail"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_short_retry_after_is_honoured(user, configs, emulator, provider):
    model = f"{speak(provider)['model']}~e429x1~ra0.4"
    response = await user.post("/audio/speak", json=speak(provider, model=model))
    assert response.status_code == 200
    first, second = hits(emulator, provider, model)
    assert second.at - first.at >= 0.35


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fault", ["ctx", "e400", "e401", "e403", "e404", "e429~ra30"])
async def test_rejections_and_long_waits_move_on_without_a_retry(user, configs, emulator, provider, fault):
    model = f"{speak(provider)['model']}~{fault}"
    other = OTHER[provider]
    response = await user.post("/audio/speak", json=chain(speak(provider, model=model), speak(other)))
    assert response.status_code == 200
    assert response.headers["X-Provider-UID"] == other
    assert len(hits(emulator, provider, model)) == 1


# ---- deadlines -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_silent_provider_is_cut_at_its_deadline_and_not_retried(user, configs, emulator, provider, path):
    model = f"{speak(provider)['model']}~hang"
    body = chain(speak(provider, model=model), speak(OTHER[provider]), timeout_per_request=1)
    started = time.monotonic()
    status, _audio, headers = await post(user, path, body)
    assert status == 200 and 1 <= time.monotonic() - started < 6  # cut at its 1 s, not left to hang
    assert headers["X-Attempts"].startswith(f"{provider}/{model}=timeout:Timeout, ")
    assert len(hits(emulator, provider, model)) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_slow_first_byte_is_abandoned_at_the_first_chunk_deadline(user, configs, emulator, provider):
    model = f"{speak(provider)['model']}~slow30"
    # No hedge (streams hedge at QALBY_HEDGE_DEFAULT, 4 s): only the deadline may end the slow one.
    body = chain(speak(provider, model=model), speak(OTHER[provider]), first_chunk_timeout=1, hedge_after="off")
    started = time.monotonic()
    status, _audio, headers = await post(user, "/audio/speak_stream", body)
    assert status == 200 and time.monotonic() - started < 8  # abandoned at its 1 s, far from its 30 s
    assert headers["X-Provider-UID"] == OTHER[provider]


async def test_the_overall_deadline_bounds_the_whole_chain(user, configs):
    body = chain(speak("openai", model="tts-1~hang"), speak("elevenlabs", model="eleven_v3~hang"),
                 timeout_per_request=60, timeout_total=0.5)
    started = time.monotonic()
    response = await user.post("/audio/speak_stream", json=body)
    assert response.status_code == 504 and time.monotonic() - started < 6  # the chain's 0.5 s, not an attempt's 60 s
    assert response.headers["content-type"] == "application/json"


# ---- failures after the first audio byte ---------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "fault"),
    [("openai", "cut2"), ("elevenlabs", "cut2"), ("elevenlabs", "nodone"), ("openai", "stall2"), ("elevenlabs", "stall2")],
)
async def test_a_stream_that_breaks_after_its_first_byte_is_cut_not_completed(
    user, configs, emulator, caplog, provider, fault
):
    model = f"{speak(provider)['model']}~{fault}"
    body = chain(speak(provider, model=model, text=LONG_TEXT), speak(OTHER[provider]), idle_timeout=0.3)
    status, received, headers, error = await read_stream(user, "/audio/speak_stream", body)
    assert status == 200 and headers["X-Provider-UID"] == provider
    # No chunked terminator: the client's HTTP library reports a truncated transfer.
    assert isinstance(error, httpx.RemoteProtocolError)
    whole = audio_of(provider, model, LONG_TEXT)
    assert 0 < len(received) < len(whole) and whole.startswith(received)
    assert emulator.recorded(OTHER[provider]) == []  # committed: no fallback after audio went out
    logged = [r.getMessage() for r in caplog.records if r.name == "qalby.audio"]
    assert any("broke after" in m and provider in m and model in m for m in logged)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_whole_speech_cut_mid_file_is_retried_then_falls_over(user, configs, emulator, provider):
    model = f"{speak(provider)['model']}~cut1"
    other = OTHER[provider]
    response = await user.post("/audio/speak", json=chain(speak(provider, model=model, text=LONG_TEXT),
                                                          speak(other, text=LONG_TEXT)))
    assert response.status_code == 200
    assert response.content == audio_of(other, speak(other)["model"], LONG_TEXT)  # never a partial file
    assert response.headers["X-Attempts"].startswith(f"{provider}/{model}=error:Unavailable")
    assert len(hits(emulator, provider, model)) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_client_that_leaves_the_stream_stops_the_provider(user, configs, emulator, provider):
    # 200 words: over 400 chunks of audio from either provider, 50 ms apart: over 20 s to send it all.
    # (``longN`` lengthens text answers, not speech: the text itself must be long.)
    model = f"{speak(provider)['model']}~gap50"
    body = speak(provider, model=model, text=" ".join(["word"] * 200))
    async with user.stream("POST", "/audio/speak_stream", json=body) as response:
        async for _chunk in response.aiter_bytes():
            break
    upstream = [r for r in emulator.recorded(provider) if b"gap50" in r.body or b"gap50" in r.path.encode()][0]
    assert await eventually(lambda: upstream.disconnected_at is not None)
    assert upstream.disconnected_at - upstream.at < 10  # long before the audio would have ended


# ---- statuses a client can act on ----------------------------------------------------------------


async def test_rate_limited_everywhere_is_a_429_with_retry_after(user, configs):
    body = chain(speak("openai", model="tts-1~e429~ra30"), speak("elevenlabs", model="eleven_v3~e429~ra20"))
    response = await user.post("/audio/speak_stream", json=body)
    assert response.status_code == 429 and response.headers["Retry-After"] == "20"
    assert statuses(response.json()["attempts"]) == ["error", "error"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_content_policy_refusal_ends_the_speech_chain(user, configs, emulator, provider, path):
    model = f"{speak(provider)['model']}~policy"
    other = OTHER[provider]
    response = await user.post(path, json=chain(speak(provider, model=model), speak(other)))
    assert response.status_code == 400 and response.json()["error_type"] == "content_policy"
    assert len(hits(emulator, provider, model)) == 1 and emulator.recorded(other) == []
    response = await user.post(path, json=chain(speak(provider, model=model), speak(other),
                                                fallback_on=["content_policy"]))
    assert response.status_code == 200 and response.headers["X-Provider-UID"] == other


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_refused_as_invalid_everywhere_is_a_400_naming_the_provider(user, configs, provider):
    model = f"{speak(provider)['model']}~policy"
    response = await user.post("/audio/speak", json=speak(provider, model=model))
    assert response.status_code == 400
    assert provider in response.json()["detail"] and model in response.json()["detail"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_wrong_provider_key_is_a_gateway_error_and_the_key_is_not_shown(user, configs, provider, path, caplog):
    await configs(provider, api_key="sk-WRONG-key-0123456789-abcdefgh")
    # ~echo: the provider's refusal quotes the request it got, the wrong key included
    # (an ElevenLabs voice by id: a name would be looked up first, a request with no model to echo)
    voice = RACHEL if provider == "elevenlabs" else "alloy"
    response = await user.post(path, json=speak(provider, model=f"{speak(provider)['model']}~echo", voice=voice))
    assert response.status_code == 502
    assert response.json()["attempts"][0]["error_type"] == "AuthFailed"
    assert "echoed request: POST /" in response.text  # so the key below was there to hide
    assert "WRONG" not in response.text and "0123456789" not in response.text
    assert "WRONG" not in caplog.text


async def test_an_elevenlabs_account_out_of_credits_is_a_gateway_error(user, configs):
    response = await user.post("/audio/speak", json=speak("elevenlabs", model="eleven_v3~e402"))
    assert response.status_code == 502
    assert response.json()["attempts"][0]["error_type"] == "AuthFailed"
    assert "credits" in response.json()["detail"].lower()


async def test_unknown_provider_uid_is_a_404_before_any_call(user, configs, emulator):
    response = await user.post("/audio/speak", json=chain(speak("openai"), {**speak("openai"), "provider_uid": "nope"}))
    assert response.status_code == 404 and "nope" in response.json()["detail"]
    assert emulator.recorded() == []


async def test_a_disabled_config_is_skipped_inside_a_chain(user, configs):
    await configs("openai", enabled=False)
    response = await user.post("/audio/speak_stream", json=chain(speak("openai"), speak("elevenlabs")))
    assert response.status_code == 200 and response.headers["X-Provider-UID"] == "elevenlabs"
    assert response.headers["X-Attempts"].startswith("openai/tts-1=error:ProviderDisabled")
