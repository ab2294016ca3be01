"""The fallback engine's rules on transcription, through the HTTP API, with the emulator's fault models."""

import time

import pytest

from tests.agent.helpers import eventually
from tests.audio.helpers import chain, statuses, transcribe, uploaded, wav_file

pytestmark = pytest.mark.django_db(transaction=True)

WAV = wav_file(0.5)
MODELS = {"openai": "whisper-1", "groq": "whisper-large-v3", "elevenlabs": "scribe_v1"}
OTHER = {"openai": "groq", "groq": "elevenlabs", "elevenlabs": "openai"}


def hits(emulator, provider, model):
    return [r for r in emulator.recorded(provider) if f"\r\n\r\n{model}\r\n".encode() in r.body]


async def run(user, body):
    return await user.post("/audio/transcribe_json", json=body)


@pytest.mark.parametrize("provider", MODELS)
async def test_sequential_moves_on_after_a_failure_and_the_next_gets_the_same_file(user, configs, emulator, provider):
    other = OTHER[provider]
    # The second request leaves the file out: it gets the first one's, sent again byte for byte.
    body = chain(transcribe(provider, f"{MODELS[provider]}~e500", WAV), transcribe(other, MODELS[other]))
    response = await run(user, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["provider_uid"], answer["model"]) == (other, MODELS[other])
    assert statuses(answer["attempts"]) == ["error", "ok"]
    failed = answer["attempts"][0]
    assert failed["provider_uid"] == provider and "500" in failed["error"] and failed["error_type"] == "Unavailable"
    for recorded in emulator.recorded():
        assert uploaded(recorded)[1] == WAV


async def test_each_request_of_a_chain_may_send_its_own_file(user, configs, emulator):
    other = wav_file(0.25)
    body = chain(transcribe("openai", "whisper-1~e400", WAV), transcribe("groq", "whisper-large-v3", other))
    response = await run(user, body)
    assert response.status_code == 200
    assert uploaded(emulator.recorded("groq")[0])[1] == other


async def test_parallel_first_success_wins_and_the_rest_are_cancelled(user, configs, emulator):
    body = chain(transcribe("openai", "whisper-1~lat30000", WAV), transcribe("groq", "whisper-large-v3"),
                 transcribe("elevenlabs", "scribe_v1~hang"), strategy="parallel")
    started = time.monotonic()
    response = await run(user, body)
    assert response.status_code == 200 and time.monotonic() - started < 8  # far from the slow one's 30 s
    answer = response.json()
    assert answer["provider_uid"] == "groq"
    assert sorted(statuses(answer["attempts"])) == ["cancelled", "cancelled", "ok"]
    assert await eventually(lambda: emulator.recorded("openai")[0].disconnected_at is not None)
    assert await eventually(lambda: emulator.recorded("elevenlabs")[0].disconnected_at is not None)
    assert uploaded(emulator.recorded("groq")[0])[1] == WAV


async def test_parallel_failures_do_not_stop_the_race(user, configs):
    body = chain(transcribe("openai", "whisper-1~e400", WAV), transcribe("elevenlabs", "scribe_v1~lat200"),
                 strategy="parallel")
    response = await run(user, body)
    assert response.status_code == 200 and response.json()["provider_uid"] == "elevenlabs"


@pytest.mark.parametrize("provider", MODELS)
@pytest.mark.parametrize("fault", ["e503x1", "resetx1", "e429x1~ra0.3"])
async def test_transient_failures_are_retried_once_with_the_whole_file(user, configs, emulator, provider, fault):
    model = f"{MODELS[provider]}~{fault}"
    response = await run(user, transcribe(provider, model, WAV))
    assert response.status_code == 200, response.text
    first, second = hits(emulator, provider, model)
    assert uploaded(second)[1] == WAV  # the retry sent the file again, from its start
    if "ra0.3" in fault:
        assert second.at - first.at >= 0.25


@pytest.mark.parametrize("provider", MODELS)
@pytest.mark.parametrize("fault", ["e400", "e401", "e403", "e404", "e429~ra30"])
async def test_rejections_and_long_waits_move_on_without_a_retry(user, configs, emulator, provider, fault):
    model = f"{MODELS[provider]}~{fault}"
    other = OTHER[provider]
    response = await run(user, chain(transcribe(provider, model, WAV), transcribe(other, MODELS[other])))
    assert response.status_code == 200
    assert statuses(response.json()["attempts"]) == ["error", "ok"]
    assert len(hits(emulator, provider, model)) == 1


@pytest.mark.parametrize("provider", MODELS)
async def test_a_silent_provider_is_cut_at_its_deadline_and_not_retried(user, configs, emulator, provider):
    model = f"{MODELS[provider]}~hang"
    other = OTHER[provider]
    body = chain(transcribe(provider, model, WAV), transcribe(other, MODELS[other]), timeout_per_request=1)
    started = time.monotonic()
    response = await run(user, body)
    assert response.status_code == 200 and 1 <= time.monotonic() - started < 6  # cut at its 1 s, not left to hang
    assert statuses(response.json()["attempts"]) == ["timeout", "ok"]
    assert len(hits(emulator, provider, model)) == 1


async def test_the_multipart_endpoint_follows_the_same_rules(user, configs, emulator):
    form = {"provider_uid": "openai", "model": "whisper-1~e503x1"}
    response = await user.post("/audio/transcribe", data=form, files={"file": ("a.wav", WAV, "audio/wav")})
    assert response.status_code == 200
    assert [uploaded(r)[1] for r in emulator.recorded("openai")] == [WAV, WAV]  # the spooled file, rewound
    form["model"] = "whisper-1~e429~ra30"
    response = await user.post("/audio/transcribe", data=form, files={"file": ("a.wav", WAV, "audio/wav")})
    assert response.status_code == 429 and response.headers["Retry-After"] == "30"


async def test_slow_answers_within_the_deadline_are_served(user, configs):
    body = chain(transcribe("elevenlabs", "scribe_v1~slow0.2~long5", WAV), timeout_per_request=2)
    response = await run(user, body)
    assert response.status_code == 200
    assert len(response.json()["text"].split()) == 7 + 5


# ---- statuses a client can act on ----------------------------------------------------------------


async def test_rate_limited_everywhere_is_a_429_with_retry_after(user, configs):
    body = chain(transcribe("openai", "whisper-1~e429~ra30", WAV), transcribe("groq", "whisper-large-v3~e429~ra20"))
    response = await run(user, body)
    assert response.status_code == 429 and response.headers["Retry-After"] == "20"


async def test_timed_out_everywhere_is_a_504(user, configs):
    response = await run(user, chain(transcribe("groq", "whisper-large-v3~hang", WAV), timeout_per_request=0.3))
    assert response.status_code == 504 and statuses(response.json()["attempts"]) == ["timeout"]


async def test_the_overall_deadline_bounds_the_whole_chain(user, configs):
    body = chain(transcribe("openai", "whisper-1~hang", WAV), transcribe("groq", "whisper-large-v3~hang"),
                 timeout_per_request=60, timeout_total=0.5)
    started = time.monotonic()
    response = await run(user, body)
    assert response.status_code == 504 and time.monotonic() - started < 6  # the chain's 0.5 s, not an attempt's 60 s


@pytest.mark.parametrize("provider", MODELS)
async def test_a_wrong_provider_key_is_a_gateway_error_and_the_key_is_not_shown(user, configs, provider, caplog):
    await configs(provider, api_key="sk-WRONG-key-0123456789-abcdefgh")
    # ~echo: the provider's refusal quotes the request it got, the wrong key included
    response = await run(user, transcribe(provider, f"{MODELS[provider]}~echo", WAV))
    assert response.status_code == 502
    assert response.json()["attempts"][0]["error_type"] == "AuthFailed"
    assert "echoed request: POST /" in response.text  # so the key below was there to hide
    assert "WRONG" not in response.text and "0123456789" not in response.text
    assert "WRONG" not in caplog.text


@pytest.mark.parametrize("provider", MODELS)
async def test_a_rejected_file_is_a_400_naming_the_provider(user, configs, provider):
    model = f"{MODELS[provider]}~e400"
    response = await run(user, transcribe(provider, model, WAV))
    assert response.status_code == 400
    assert provider in response.json()["detail"] and model in response.json()["detail"]


async def test_unknown_provider_uid_is_a_404_before_any_call(user, configs, emulator):
    response = await run(user, chain(transcribe("openai", "whisper-1", WAV), transcribe("nope", "whisper-1")))
    assert response.status_code == 404 and "nope" in response.json()["detail"]
    assert emulator.recorded() == []


async def test_a_disabled_config_is_skipped_inside_a_chain(user, configs):
    await configs("openai", enabled=False)
    response = await run(user, chain(transcribe("openai", "whisper-1", WAV), transcribe("groq", "whisper-large-v3")))
    assert response.status_code == 200 and statuses(response.json()["attempts"]) == ["error", "ok"]
    assert "disabled" in response.json()["attempts"][0]["error"]


async def test_a_chain_whose_first_request_has_no_file_is_a_400(user, configs, emulator):
    response = await run(user, chain(transcribe("openai", "whisper-1"), transcribe("groq", "whisper-large-v3", WAV)))
    assert response.status_code == 400 and "first request needs a file" in response.json()["detail"]
    assert emulator.recorded() == []
