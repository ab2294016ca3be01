"""Every rule of the fallback engine, through the HTTP API, with the emulator's fault models."""

import time

import httpx
import pytest

from tests.agent.helpers import chain, eventually, single, statuses, stream, text_of
from tests.conftest import CHAT_PROVIDERS

pytestmark = pytest.mark.django_db(transaction=True)


def hits(emulator, provider, model):
    return [r for r in emulator.recorded(provider) if model in r.path or model.encode() in r.body]


# ---- sequential and parallel ---------------------------------------------------------------------


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_sequential_moves_on_after_a_failure(user, configs, emulator, provider):
    other = "anthropic" if provider != "anthropic" else "openai"
    body = chain(single(provider, model="down~e500"), single(other, model="up"))
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["provider_uid"], answer["model"]) == (other, "up")
    assert statuses(answer["attempts"]) == ["error", "ok"]
    failed = answer["attempts"][0]
    assert failed["provider_uid"] == provider and failed["model"] == "down~e500" and "500" in failed["error"]


async def test_parallel_first_success_wins_and_the_rest_are_cancelled(user, configs, emulator):
    # The winner takes 1 s, so the losers' requests have reached the emulator before they are cancelled.
    body = chain(single("openai", model="slow~lat30000"), single("google", model="fast~lat1000"),
                 single("groq", model="never~hang"), strategy="parallel")
    started = time.monotonic()
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200
    assert time.monotonic() - started < 8  # did not wait for the slow one's 30 s (nor the hung one)
    answer = response.json()
    assert answer["provider_uid"] == "google"
    assert statuses(answer["attempts"]) == ["cancelled", "ok", "cancelled"] or sorted(statuses(answer["attempts"])) == [
        "cancelled", "cancelled", "ok"]
    # The losers' connections are closed, so the emulator stops working on them.
    assert await eventually(lambda: emulator.recorded("openai")[0].disconnected_at is not None)
    assert await eventually(lambda: emulator.recorded("groq")[0].disconnected_at is not None)
    assert emulator.recorded("google")[0].disconnected_at is None


async def test_parallel_failures_do_not_stop_the_race(user, configs):
    body = chain(single("openai", model="a~e400"), single("anthropic", model="b~lat200"), strategy="parallel")
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200
    assert response.json()["provider_uid"] == "anthropic"


# ---- retries on the same provider ----------------------------------------------------------------


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_5xx_is_retried_once_on_the_same_provider(user, configs, emulator, provider):
    response = await user.post("/agent/run", json=single(provider, model="flaky~e503x1"))
    assert response.status_code == 200, response.text
    assert statuses(response.json()["attempts"]) == ["ok"]
    assert len(hits(emulator, provider, "flaky~e503x1")) == 2


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_persistent_5xx_is_retried_only_once(user, configs, emulator, provider):
    response = await user.post("/agent/run", json=single(provider, model="dead~e500"))
    assert response.status_code == 502
    assert len(hits(emulator, provider, "dead~e500")) == 2
    detail = response.json()["detail"]
    assert provider in detail and "dead~e500" in detail


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_short_retry_after_is_honoured(user, configs, emulator, provider):
    response = await user.post("/agent/run", json=single(provider, model="busy~e429x1~ra0.4"))
    assert response.status_code == 200, response.text
    requests = hits(emulator, provider, "busy~e429x1~ra0.4")
    assert len(requests) == 2
    # Retried after the 0.4 s asked for, not after some long backoff of its own (the emulator's clock).
    assert 0.35 <= requests[1].at - requests[0].at < 5


@pytest.mark.parametrize("model", ["busy~e429", "busy~e429~ra30"])
async def test_a_429_without_a_short_retry_after_moves_on(user, configs, emulator, model):
    body = chain(single("openai", model=model), single("anthropic", model="ok"))
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200
    assert statuses(response.json()["attempts"]) == ["error", "ok"]
    assert len(hits(emulator, "openai", model)) == 1


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
@pytest.mark.parametrize("fault", ["ctx", "e400", "e401", "e403", "e404"])
async def test_rejections_are_never_retried_on_the_same_model(user, configs, emulator, provider, fault):
    model = f"m~{fault}"
    body = chain(single(provider, model=model), single("openai" if provider != "openai" else "groq", model="ok"))
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200
    assert statuses(response.json()["attempts"]) == ["error", "ok"]
    assert len(hits(emulator, provider, model)) == 1


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
@pytest.mark.parametrize("path", ["/agent/run", "/agent/run_stream"])
async def test_a_content_policy_refusal_ends_the_chain_after_one_call(user, configs, emulator, provider, path):
    other = "openai" if provider != "openai" else "groq"
    body = chain(single(provider, model="m~policy"), single(other, model="ok"))
    response = await user.post(path, json=body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["error_type"] == "content_policy"
    assert provider in answer["detail"] and "m~policy" in answer["detail"] and "content policy" in answer["detail"]
    assert [(a["status"], a["error_type"]) for a in answer["attempts"]] == [("error", "content_policy")]
    assert len(hits(emulator, provider, "m~policy")) == 1 and emulator.recorded(other) == []


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_request_may_opt_in_to_falling_over_on_a_content_policy_refusal(user, configs, emulator, provider):
    other = "openai" if provider != "openai" else "groq"
    body = chain(single(provider, model="m~policy"), single(other, model="ok"), fallback_on=["content_policy"])
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200, response.text
    assert statuses(response.json()["attempts"]) == ["error", "ok"]


async def test_a_content_policy_refusal_ends_a_race_and_cancels_the_others(user, configs, emulator):
    body = chain(single("anthropic", model="m~policy"), single("openai", model="ok~slow30"), strategy="parallel")
    started = time.monotonic()
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 400 and response.json()["error_type"] == "content_policy"
    assert time.monotonic() - started < 8  # did not wait for the other's 30 s
    assert statuses(response.json()["attempts"]) == ["error", "cancelled"]


async def test_only_content_policy_may_be_listed_in_fallback_on(user, configs):
    body = chain(single("openai"), single("groq"), fallback_on=["context_length"])
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 400 and "fallback_on" in response.json()["detail"]


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_connection_reset_before_any_byte_is_retried_once(user, configs, emulator, provider):
    response = await user.post("/agent/run", json=single(provider, model="m~resetx1"))
    assert response.status_code == 200, response.text
    assert len(hits(emulator, provider, "m~resetx1")) == 2


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_silent_provider_is_cut_at_its_deadline_and_not_retried(user, configs, emulator, provider):
    body = chain(single(provider, model="m~hang"), single("openai" if provider != "openai" else "groq", model="ok"),
                 timeout_per_request=1)
    started = time.monotonic()
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 200
    assert 1 <= time.monotonic() - started < 6  # cut at its 1 s, not left to hang
    assert statuses(response.json()["attempts"]) == ["timeout", "ok"]
    assert len(hits(emulator, provider, "m~hang")) == 1


async def test_the_overall_deadline_bounds_the_whole_chain(user, configs):
    body = chain(single("openai", model="a~hang"), single("groq", model="b~hang"), single("google", model="c~hang"),
                 timeout_per_request=60, timeout_total=0.6)
    started = time.monotonic()
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 504
    assert time.monotonic() - started < 6  # the chain's 0.6 s, far from any attempt's 60 s


# ---- statuses a client can act on ----------------------------------------------------------------


async def test_rate_limited_everywhere_is_a_429_with_retry_after(user, configs):
    body = chain(single("openai", model="a~e429~ra30"), single("anthropic", model="b~e429~ra20"))
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "20"
    assert len(response.json()["attempts"]) == 2


async def test_timed_out_everywhere_is_a_504(user, configs):
    response = await user.post("/agent/run", json=chain(single("openai", model="a~hang"), timeout_per_request=0.3))
    assert response.status_code == 504
    assert statuses(response.json()["attempts"]) == ["timeout"]


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_rejected_as_invalid_everywhere_is_a_400_naming_the_provider(user, configs, provider):
    response = await user.post("/agent/run", json=single(provider, model="m~ctx"))
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert provider in detail and "context length" in detail


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_wrong_provider_key_is_a_gateway_error_and_the_key_is_not_shown(user, configs, provider):
    await configs(provider, api_key="sk-WRONG-key-0123456789-abcdefgh")
    # ~echo: the provider's refusal quotes the request it got, the wrong key included
    response = await user.post("/agent/run", json=single(provider, model="m~echo"))
    assert response.status_code == 502
    assert "echoed request: POST /" in response.text  # so the key below was there to hide
    assert "WRONG" not in response.text and "0123456789" not in response.text


async def test_mixed_failures_are_a_502(user, configs):
    response = await user.post("/agent/run", json=chain(single("openai", model="a~e400"), single("groq", model="b~e500")))
    assert response.status_code == 502
    assert statuses(response.json()["attempts"]) == ["error", "error"]


async def test_unknown_provider_uid_is_a_404_before_any_call(user, configs, emulator):
    response = await user.post("/agent/run", json=chain(single("openai"), single("nope")))
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]
    assert emulator.recorded() == []


async def test_a_disabled_config_is_skipped_inside_a_chain(user, configs):
    await configs("openai", enabled=False)
    response = await user.post("/agent/run", json=chain(single("openai"), single("groq")))
    assert response.status_code == 200, response.text
    assert statuses(response.json()["attempts"]) == ["error", "ok"]
    assert "disabled" in response.json()["attempts"][0]["error"]


# ---- streams -------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_stream_falls_over_silently_before_its_first_chunk(user, configs, provider):
    other = "openai" if provider != "openai" else "groq"
    body = chain(single(provider, model="m~e503"), single(other, model="ok"))
    status, lines, _ = await stream(user, body)
    assert status == 200
    assert lines[0]["provider_uid"] == other
    assert lines[-1]["type"] == "done"
    assert statuses(lines[-1]["attempts"]) == ["error", "ok"]


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_slow_first_chunk_is_abandoned_at_the_first_chunk_deadline(user, configs, provider):
    other = "openai" if provider != "openai" else "groq"
    # No hedge (streams hedge at QALBY_HEDGE_DEFAULT, 4 s): only the deadline may end the slow one.
    body = chain(single(provider, model="m~slow30"), single(other, model="ok"), first_chunk_timeout=1, hedge_after="off")
    started = time.monotonic()
    status, lines, _ = await stream(user, body)
    assert status == 200 and lines[0]["provider_uid"] == other
    assert time.monotonic() - started < 8  # abandoned at its 1 s, far from its 30 s
    assert statuses(lines[-1]["attempts"]) == ["timeout", "ok"]


def answer_since_last_restart(lines: list[dict]) -> str:
    """What a client shows: the text since ``start`` or the last ``restart`` line."""
    text = ""
    for line in lines:
        if line["type"] == "restart":
            text = ""
        elif line["type"] == "delta":
            text += line["text"]
    return text


# The four ways a committed stream breaks, as the emulator plays them (tests/emulator/README.md).
# One undecodable event is skipped (see below): it takes a second one to break a stream.
BREAKS = {"cut": "m~long30~cut6", "stall": "m~long30~stall6", "malformed": "m~long30~bad5+8", "no finish": "m~long30~nodone"}


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
@pytest.mark.parametrize("how", BREAKS)
async def test_a_broken_stream_restarts_on_the_next_request_of_its_chain(user, configs, emulator, provider, how):
    other = "openai" if provider != "openai" else "groq"
    body = chain(single(provider, model=BREAKS[how]), single(other, model="whole"), idle_timeout=0.5)
    status, lines, headers = await stream(user, body)
    assert status == 200
    kinds = [line["type"] for line in lines]
    assert kinds[0] == "start" and lines[0]["provider_uid"] == provider
    if how == "no finish" and provider in ("openai", "groq"):
        # Their finish_reason comes in a chunk before the [DONE] terminator: the answer is whole.
        assert "restart" not in kinds and lines[-1]["provider_uid"] == provider
        return
    assert kinds.count("restart") == 1 and kinds[-1] == "done", kinds
    restart = lines[kinds.index("restart")]
    assert (restart["provider_uid"], restart["model"]) == (other, "whole")
    assert provider in restart["reason"] and statuses(restart["attempts"])[0] in ("error", "timeout")
    assert "delta" in kinds[1:kinds.index("restart")]  # the first answer had begun
    assert lines[-1]["provider_uid"] == other and statuses(lines[-1]["attempts"])[-1] == "ok"
    # The fallback's whole answer, from its beginning (never a continuation of the partial one).
    whole = (await user.post("/agent/run", json=single(other, model="whole"))).json()["output"]
    assert answer_since_last_restart(lines) == whole
    sent = emulator.recorded(other)[0].json()
    assert [m["role"] for m in sent["messages"]] == ["user"]  # no prefilled assistant turn


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_restart_is_accepted_by_a_fallback_that_refuses_prefill(user, configs, emulator, provider):
    # The fallback refuses a conversation ending with an assistant turn (as several current models do):
    # a restart from the original messages is answered; a continuation of the partial answer would be a 400.
    first = "openai" if provider != "openai" else "groq"
    body = chain(single(first, model="m~long30~cut6"), single(provider, model="m~noprefill"))
    status, lines, _ = await stream(user, body)
    assert status == 200 and [line["type"] for line in lines].count("restart") == 1
    assert lines[-1]["type"] == "done" and lines[-1]["provider_uid"] == provider
    assert statuses(lines[-1]["attempts"]) == ["error", "ok"]


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_request_may_ask_for_an_error_line_instead_of_a_restart(user, configs, provider):
    body = chain(single(provider, model="m~cut4"), single("openai", model="never-used"), on_stream_failure="error")
    status, lines, _ = await stream(user, body)
    assert status == 200
    assert lines[0]["type"] == "start" and lines[0]["provider_uid"] == provider
    assert any(line["type"] == "delta" for line in lines)
    assert lines[-1]["type"] == "error" and "restart" not in [line["type"] for line in lines]
    assert provider in lines[-1]["detail"]
    assert statuses(lines[-1]["attempts"]) == ["error"]


async def test_the_default_comes_from_qalby_stream_failure(user, configs, settings):
    settings.QALBY_STREAM_FAILURE = "error"
    _status, lines, _ = await stream(user, chain(single("groq", model="m~cut4"), single("openai")))
    assert lines[-1]["type"] == "error"
    _status, lines, _ = await stream(user, chain(single("groq", model="m~cut4"), single("openai"),
                                                 on_stream_failure="restart"))
    assert lines[-1]["type"] == "done"


async def test_a_chain_of_one_has_nothing_to_restart_to(user, configs):
    _status, lines, _ = await stream(user, chain(single("anthropic", model="m~cut4")))
    assert lines[-1]["type"] == "error" and "restart" not in [line["type"] for line in lines]


async def test_a_restart_whose_every_fallback_fails_ends_with_an_error_line_naming_all(user, configs):
    body = chain(single("openai", model="m~cut4"), single("anthropic", model="m~e400"), single("google", model="m~ctx"))
    _status, lines, _ = await stream(user, body)
    assert [line["type"] for line in lines if line["type"] != "delta"] == ["start", "error"]
    assert statuses(lines[-1]["attempts"]) == ["error", "error", "error"]
    assert "anthropic" in lines[-1]["detail"] and "google" in lines[-1]["detail"]


async def test_a_restart_stays_within_the_chain_deadline(user, configs):
    body = chain(single("openai", model="m~long30~gap100~cut4"), single("groq", model="m~slow30"), timeout_total=2)
    started = time.monotonic()
    _status, lines, _ = await stream(user, body)
    assert lines[-1]["type"] == "error" and time.monotonic() - started < 8  # the chain's 2 s, not the fallback's 30 s


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_stalled_stream_ends_at_the_idle_deadline(user, configs, provider):
    started = time.monotonic()
    status, lines, _ = await stream(user, single(provider, model="m~stall4", idle_timeout=0.4))
    assert status == 200
    assert lines[-1]["type"] == "error" and "stalled" in lines[-1]["detail"]
    assert statuses(lines[-1]["attempts"]) == ["timeout"]
    assert time.monotonic() - started < 6  # the stall never ends: only the deadline ends it


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_one_undecodable_event_is_skipped_and_counted(user, configs, provider):
    status, lines, _ = await stream(user, single(provider, model="m~long12~bad5"))
    assert status == 200 and lines[-1]["type"] == "done"
    (attempt,) = lines[-1]["attempts"]
    assert attempt["status"] == "ok" and attempt["skipped_events"] == 1
    whole = (await user.post("/agent/run", json=single(provider, model="m~long12"))).json()
    assert whole["attempts"][0]["skipped_events"] == 0
    # The skipped event's piece of the answer is missing, nothing else.
    assert len(text_of(lines)) < len(whole["output"]) and text_of(lines).split()[-3:] == whole["output"].split()[-3:]


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_second_undecodable_event_is_an_error_never_a_done(user, configs, provider):
    status, lines, _ = await stream(user, single(provider, model="m~long12~bad5+7"))
    assert status == 200
    assert lines[-1]["type"] == "error"
    assert not any(line["type"] == "done" for line in lines)
    assert lines[-1]["attempts"][0]["skipped_events"] == 1


async def test_skipped_events_are_in_the_request_log(user, configs):
    from asgiref.sync import sync_to_async

    from providers.models import Attempt

    _status, lines, _ = await stream(user, single("anthropic", model="m~long12~bad6"))
    assert lines[-1]["type"] == "done"

    def logged():
        return list(Attempt.objects.filter(model="m~long12~bad6").values_list("skipped_events", flat=True))

    async def flushed():
        import asyncio

        for _ in range(40):
            if rows := await sync_to_async(logged)():
                return rows
            await asyncio.sleep(0.05)
        return []

    assert await flushed() == [1]


@pytest.mark.parametrize(
    ("provider", "last"),
    # OpenAI and Groq: only the transport's [DONE] is missing, the finish reason and usage arrived.
    # Anthropic: no message_stop; Google: no finishReason. Those answers may be truncated.
    [("openai", "done"), ("groq", "done"), ("anthropic", "error"), ("google", "error")],
)
async def test_a_stream_without_its_finish_signal_is_never_a_done(user, configs, provider, last):
    status, lines, _ = await stream(user, single(provider, model="m~nodone"))
    assert status == 200
    assert lines[-1]["type"] == last
    if last == "error":
        assert "ended before" in lines[-1]["detail"]


async def test_all_streams_failing_before_content_is_an_http_error_not_a_stream(user, configs):
    status, body, headers = await stream(user, chain(single("openai", model="a~e500"), single("groq", model="b~e401")))
    assert status == 502
    assert headers["content-type"] == "application/json"
    assert statuses(body["attempts"]) == ["error", "error"]


async def test_parallel_streams_race_to_their_first_chunk(user, configs, emulator):
    body = chain(single("openai", model="slow~slow30"), single("anthropic", model="fast"), strategy="parallel")
    started = time.monotonic()
    status, lines, _ = await stream(user, body)
    assert status == 200
    assert time.monotonic() - started < 8  # far from the slow one's 30 s
    assert lines[0]["provider_uid"] == "anthropic"
    assert lines[-1]["type"] == "done"
    assert sorted(statuses(lines[-1]["attempts"])) == ["cancelled", "ok"]
    assert text_of(lines).startswith("hello there")


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_a_client_that_leaves_cancels_the_upstream_stream(user, configs, emulator, provider):
    async with user.stream("POST", "/agent/run_stream", json=single(provider, model="m~long400~gap50")) as response:
        async for line in response.aiter_lines():
            if '"delta"' in line:
                break
    await eventually(lambda: emulator.recorded(provider)[0].disconnected_at is not None, within=10)
    upstream = emulator.recorded(provider)[0]
    assert upstream.disconnected_at is not None
    assert upstream.disconnected_at - upstream.at < 10  # long before the 20 s the answer would take


async def test_a_client_that_leaves_a_run_cancels_the_upstream_call(user, configs, emulator):
    with pytest.raises(httpx.ReadTimeout):
        await user.post("/agent/run", json=single("openai", model="m~hang"), timeout=0.5)
    assert await eventually(lambda: emulator.recorded("openai")[0].disconnected_at is not None)


async def test_a_config_this_server_cannot_decrypt_fails_as_an_attempt(user, configs, settings, make_key, emulator):
    from cryptography.fernet import Fernet

    from providers.models import mask_secret

    settings.QALBY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the stored keys were made with another
    await configs("groq")  # saved again with the new key: usable
    response = await user.post("/agent/run", json=chain(single("openai"), single("groq")))
    assert response.status_code == 200, response.text
    assert statuses(response.json()["attempts"]) == ["error", "ok"]
    assert "QALBY_ENCRYPTION_KEYS" in response.json()["attempts"][0]["error"]
    # An operator (a 'manage' key) still lists every config, and is told which key cannot be decrypted.
    listed = await user.get("/providers/configs", headers={"Authorization": f"Bearer {await make_key('manage')}"})
    assert listed.status_code == 200, listed.text
    keys = {config["uid"]: config["api_key"] for config in listed.json()}
    assert keys["openai"] == "(cannot be decrypted: check QALBY_ENCRYPTION_KEYS)"
    assert keys["groq"] == mask_secret(emulator.keys["groq"])
