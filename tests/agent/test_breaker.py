"""The circuit breaker (issue #13), through the HTTP API, the real SDKs and the emulator's faults."""

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async

from providers.models import Attempt
from tests.agent.helpers import chain, single, statuses, stream

pytestmark = pytest.mark.django_db(transaction=True)

COOLDOWN = 2.0  # seconds: the requests meant to meet the open breaker arrive well within it


@pytest.fixture
def short(settings):
    """A breaker that opens after 2 failed attempts and stays open COOLDOWN seconds; retries without a pause."""
    settings.QALBY_BREAKER_THRESHOLD = 2
    settings.QALBY_BREAKER_COOLDOWN = COOLDOWN
    settings.QALBY_RETRY_BACKOFF = 0.01
    settings.QALBY_METRICS_TOKEN = "scrape"
    return settings


def hits(emulator, provider, model):
    return len([r for r in emulator.recorded(provider) if model.encode() in r.body])


async def run(user, first: str, **extra):
    response = await user.post("/agent/run", json=chain(single("openai", model=first), single("anthropic", model="up"),
                                                        **extra))
    assert response.status_code == 200, response.text
    return response.json()


def metric(text: str, name: str, provider: str) -> float:
    line = next((line for line in text.splitlines() if line.startswith(f'{name}{{provider="{provider}"}}')), None)
    return float(line.rsplit(" ", 1)[1]) if line else 0.0


async def test_a_run_of_5xx_opens_the_breaker_then_a_probe_closes_it(user, configs, emulator, short):
    scrape = {"Authorization": "Bearer scrape"}
    before = (await user.get("/metrics", headers=scrape)).text
    model = "flaky~e503x4"  # the emulator fails the first 4 calls: two attempts with their retry
    for _ in range(2):
        assert statuses((await run(user, model))["attempts"]) == ["error", "ok"]
    assert hits(emulator, "openai", model) == 4

    # Open: skipped at once, with the reason; the provider is not called.
    answer = await run(user, model)
    skipped, served = answer["attempts"]
    assert (skipped["status"], skipped["error_type"], skipped["provider_uid"]) == ("skipped", "CircuitOpen", "openai")
    assert "circuit breaker open" in skipped["error"] and skipped["latency_ms"] == 0
    assert served["status"] == "ok" and hits(emulator, "openai", model) == 4

    # Streams skip it too.
    status, lines, _ = await stream(user, chain(single("openai", model=model), single("anthropic", model="up")))
    assert status == 200 and statuses(lines[-1]["attempts"]) == ["skipped", "ok"]

    # After the cooldown one probe goes through; it succeeds, so the breaker closes.
    await asyncio.sleep(COOLDOWN + 0.3)
    answer = await run(user, model)
    assert statuses(answer["attempts"]) == ["ok"] and answer["provider_uid"] == "openai"
    assert statuses((await run(user, model))["attempts"]) == ["ok"]
    assert hits(emulator, "openai", model) == 6

    after = (await user.get("/metrics", headers=scrape)).text
    assert metric(after, "qalby_breaker_opens_total", "openai") - metric(before, "qalby_breaker_opens_total", "openai") == 1
    assert metric(after, "qalby_breaker_skips_total", "openai") - metric(before, "qalby_breaker_skips_total", "openai") == 2


async def test_skipped_attempts_are_in_the_request_logs(user, configs, short):
    for _ in range(3):
        await run(user, "down~e500")
    from providers.requestlogs.batching import writer

    assert await asyncio.to_thread(writer.flush, 10)
    outcomes = await sync_to_async(list)(Attempt.objects.filter(provider_uid="openai").order_by("id")
                                         .values_list("outcome", "error_type"))
    assert outcomes == [("error", "Unavailable"), ("error", "Unavailable"), ("skipped", "CircuitOpen")]


async def test_the_last_entry_left_runs_and_a_failed_probe_reopens(user, configs, emulator, short):
    model = "dead~e503"
    for _ in range(2):
        await run(user, model)
    # A single request is its chain's last entry: it is tried even though the breaker is open.
    response = await user.post("/agent/run", json=single("openai", model=model))
    assert response.status_code == 502 and statuses(response.json()["attempts"]) == ["error"]
    # As is the last entry of a chain whose other entries are open.
    response = await user.post("/agent/run", json=chain(single("openai", model=model), single("openai", model=model)))
    assert statuses(response.json()["attempts"]) == ["skipped", "error"]

    await asyncio.sleep(COOLDOWN + 0.3)
    calls = hits(emulator, "openai", model)
    assert statuses((await run(user, model))["attempts"]) == ["error", "ok"]  # the probe, which fails
    assert hits(emulator, "openai", model) == calls + 2
    assert statuses((await run(user, model))["attempts"]) == ["skipped", "ok"]  # open again


async def test_a_flapping_model_is_skipped_while_down_and_served_again_once_it_recovers(user, configs, emulator, short):
    # The emulator fails this model for 3 s from its first call, then answers: the breaker opens on the
    # run of failures, its probes (one per 1.5 s cooldown) fail while the model is down, and the first
    # probe after it recovers closes it.
    short.QALBY_BREAKER_COOLDOWN = 1.5
    model = "flap~down3"
    started = time.monotonic()
    outcomes = []
    while time.monotonic() - started < 7.5:
        outcomes.append(statuses((await run(user, model))["attempts"])[0])
        await asyncio.sleep(0.1)
    assert outcomes[:2] == ["error", "error"] and outcomes[2] == "skipped"
    assert outcomes[-1] == "ok" and outcomes.count("ok") >= 2
    recovered = outcomes.index("ok")
    assert set(outcomes[recovered:]) == {"ok"}  # closed again: no more skips
    # While open, the model was not called except by a probe per cooldown.
    assert hits(emulator, "openai", model) <= 2 * 2 + 3 + len(outcomes) - recovered


async def test_timeouts_count(user, configs, short):
    for _ in range(2):
        assert statuses((await run(user, "slow~hang", timeout_per_request=0.4))["attempts"]) == ["timeout", "ok"]
    assert statuses((await run(user, "slow~hang", timeout_per_request=0.4))["attempts"]) == ["skipped", "ok"]


@pytest.mark.parametrize("fault", ["e400", "e429", "ctx", "policy", "e401"])
async def test_rejections_and_rate_limits_do_not_count(user, configs, short, fault):
    body = chain(single("openai", model=f"m~{fault}"), single("anthropic", model="up"), fallback_on=["content_policy"])
    if fault != "policy":
        body.pop("fallback_on")
    for _ in range(4):
        response = await user.post("/agent/run", json=body)
        assert "skipped" not in statuses(response.json()["attempts"]), response.text


async def test_breakers_are_per_model_and_per_config_options_override_the_settings(user, configs, emulator, short):
    await configs("openai", options={"breaker_threshold": 4})
    for _ in range(2):
        await run(user, "a~e500")
    assert statuses((await run(user, "a~e500"))["attempts"]) == ["error", "ok"]  # 4 for this config, not 2
    await run(user, "a~e500")
    assert statuses((await run(user, "a~e500"))["attempts"]) == ["skipped", "ok"]
    assert statuses((await run(user, "b"))["attempts"]) == ["ok"]  # another model of the same config

    await configs("openai", options={"breaker_threshold": 0})  # never opens
    assert statuses((await run(user, "a~e500"))["attempts"]) == ["error", "ok"]


async def test_parallel_skips_open_entries_unless_all_are_open(user, configs, short):
    for _ in range(2):
        await run(user, "x~e500")
        await user.post("/agent/run", json=chain(single("groq", model="y~e500"), single("anthropic", model="up")))
    body = chain(single("openai", model="x~e500"), single("anthropic", model="up"), strategy="parallel")
    answer = (await user.post("/agent/run", json=body)).json()
    assert statuses(answer["attempts"]) == ["skipped", "ok"]
    # Every entry open: the last one runs anyway.
    body = chain(single("openai", model="x~e500"), single("groq", model="y~e500"), strategy="parallel")
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 502 and statuses(response.json()["attempts"]) == ["skipped", "error"]


async def test_the_admin_and_the_overview_show_open_breakers(user, configs, short, admin_client):
    await configs("openai", options={"breaker_cooldown": 60})
    for _ in range(2):
        await run(user, "z~e502")
    page = (await sync_to_async(admin_client.get)("/admin/providers/providerconfig/")).content.decode()
    assert "z~e502: open (" in page and "closed" in page  # openai open; the others closed
    page = (await sync_to_async(admin_client.get)("/admin/providers/requestlog/overview/")).content.decode()
    assert "<td>openai</td><td>z~e502</td><td>open</td>" in page
