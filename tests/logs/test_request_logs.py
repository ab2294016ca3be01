"""Request logs: one per API call, with its attempts, written off the request path, never lost."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from providers.models import RequestLog
from providers.requestlogs.batching import writer
from tests.agent.helpers import chain, single, stream

pytestmark = pytest.mark.django_db(transaction=True)


async def flushed():
    assert await sync_to_async(writer.flush)(timeout=10)


async def log_of(request_id: str) -> RequestLog:
    await flushed()
    return await RequestLog.objects.prefetch_related("attempts").aget(request_id=request_id)


async def test_a_fallback_run_is_logged_with_every_attempt(user, configs):
    body = chain(single("openai", model="down~e500"), single("anthropic", model="up", text="hi there"))
    response = await user.post("/agent/run", json=body, headers={"X-Request-ID": "audit-me-1"})
    assert response.headers["X-Request-ID"] == "audit-me-1"
    log = await log_of("audit-me-1")
    assert (log.endpoint, log.status, log.outcome, log.mode) == ("POST /agent/run", 200, "ok", "sequential")
    assert (log.provider_uid, log.model, log.fallbacks, log.attempt_count) == ("anthropic", "up", 1, 2)
    assert log.client_key_name == "test client" and log.client_key_prefix
    assert log.input_tokens and log.output_tokens and log.latency_ms is not None
    assert log.prompt == "" and log.answer == ""  # content is private unless asked for
    attempts = [(a.order, a.provider_uid, a.outcome, a.upstream_status, a.error_type, a.retries)
                for a in log.attempts.all()]
    assert attempts == [(0, "openai", "error", 500, "Unavailable", 1), (1, "anthropic", "ok", None, "", 0)]


async def test_failures_are_logged_with_their_status_and_detail(user, configs):
    response = await user.post("/agent/run", json=single("openai", model="m~ctx"))
    log = await log_of(response.headers["X-Request-ID"])
    assert (log.status, log.outcome, log.provider_uid) == (400, "error", "")
    assert "context length" in log.error
    assert [a.outcome for a in log.attempts.all()] == ["error"]


async def test_what_a_client_sends_cannot_hold_up_the_logs(user, configs):
    # A NUL in a provider_options key reaches the log (quoted in the error); PostgreSQL refuses NUL
    # in text. A long unknown path is logged, but as no route, never as the client wrote it.
    odd = await user.post("/agent/run", json=single("openai", gen_config={"provider_options": {"x\u0000y": 1}}))
    long_path = await user.post("/agent/" + "x" * 300, json={})
    assert (odd.status_code, long_path.status_code) == (400, 404)
    after = await user.post("/agent/run", json=single("openai"))
    assert (await log_of(after.headers["X-Request-ID"])).status == 200
    log = await log_of(odd.headers["X-Request-ID"])
    assert "not accepted: x\ufffdy;" in log.error
    assert (await log_of(long_path.headers["X-Request-ID"])).endpoint == "POST unmatched"


async def test_streams_are_logged_when_they_end(user, configs):
    status, lines, headers = await stream(user, single("google", model="m"))
    assert lines[-1]["type"] == "done"
    log = await log_of(headers["X-Request-ID"])
    assert (log.endpoint, log.status, log.outcome, log.provider_uid) == ("POST /agent/run_stream", 200, "done", "google")
    assert log.first_chunk_ms is not None and log.output_tokens == 7

    status, lines, headers = await stream(user, single("openai", model="m~cut4"))
    log = await log_of(headers["X-Request-ID"])
    assert (log.status, log.outcome) == (200, "error")
    assert "openai" in log.error


async def test_a_stream_the_client_left_is_logged_as_cancelled(user, configs):
    async with user.stream("POST", "/agent/run_stream", json=single("groq", model="m~long400~gap50")) as response:
        request_id = response.headers["X-Request-ID"]
        async for line in response.aiter_lines():
            if '"delta"' in line:
                break
    for _ in range(40):
        await flushed()
        if await RequestLog.objects.filter(request_id=request_id).aexists():
            break
        await asyncio.sleep(0.05)
    log = await log_of(request_id)
    assert log.outcome == "cancelled"
    assert [a.outcome for a in log.attempts.all()] == ["cancelled"]


async def test_content_is_stored_truncated_only_when_asked(user, configs, settings):
    settings.QALBY_LOG_CONTENT = True
    settings.QALBY_LOG_CONTENT_MAX_CHARS = 20
    response = await user.post("/agent/run", json=single("openai", text="a private conversation about cats"))
    log = await log_of(response.headers["X-Request-ID"])
    assert log.prompt == "user: a private conv"
    assert log.answer == response.json()["output"][:20]


async def test_n_concurrent_requests_leave_exactly_n_logs(user, configs):
    bodies = [single(p, model="m") for p in ["openai", "anthropic", "google", "groq"] * 10]
    bodies += [chain(single("openai", model="x~e503"), single("groq", model="y"))] * 5
    bodies += [single("anthropic", model="z~e400")] * 5
    responses = await asyncio.gather(*(user.post("/agent/run", json=b) for b in bodies))
    ids = [r.headers["X-Request-ID"] for r in responses]
    await flushed()
    assert await RequestLog.objects.filter(request_id__in=ids).acount() == len(bodies) == 50
    from providers.models import Attempt

    assert await Attempt.objects.filter(request_log__request_id__in=ids).acount() == 40 + 5 * 2 + 5


async def test_configuration_changes_and_refusals_of_a_key_are_logged(http, make_key):
    manage = {"Authorization": f"Bearer {await make_key('manage')}"}
    created = await http.post("/providers/config", json={"uid": "x", "provider": "openai", "api_key": "sk-" + "k" * 30},
                              headers=manage)
    refused = await http.get("/providers/configs", headers={"Authorization": f"Bearer {await make_key('use')}"})
    anonymous = await http.get("/providers/configs")
    await flushed()
    log = await RequestLog.objects.aget(request_id=created.headers["X-Request-ID"])
    assert (log.endpoint, log.status, log.client_key_name) == ("POST /providers/config", 201, "test client")
    denied = await RequestLog.objects.aget(request_id=refused.headers["X-Request-ID"])
    assert (denied.status, denied.client_key_name) == (403, "test client")
    assert "k" * 30 not in (log.error + denied.error)
    # Without a valid key, a refusal is only counted (tests/logs/test_noise.py).
    assert anonymous.status_code == 401
    assert not await RequestLog.objects.filter(request_id=anonymous.headers["X-Request-ID"]).aexists()


async def test_health_checks_are_not_logged(http):
    response = await http.get("/healthz")
    await flushed()
    assert not await RequestLog.objects.filter(request_id=response.headers["X-Request-ID"]).aexists()
