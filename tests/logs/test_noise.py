"""Requests from nobody add no log rows and no metric series; every request by a client key is logged."""

import secrets

import pytest
from asgiref.sync import sync_to_async

from providers.models import RequestLog
from providers.requestlogs.batching import writer
from tests.agent.helpers import single

pytestmark = pytest.mark.django_db(transaction=True)

SCRAPE = {"Authorization": "Bearer metrics-secret"}
NOISE = "qalby_unauthenticated_requests"


@pytest.fixture
def scrape(http, settings):
    settings.QALBY_METRICS_TOKEN = "metrics-secret"

    async def series() -> dict[str, float]:
        text = (await http.get("/metrics", headers=SCRAPE)).text
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines() if line.startswith("qalby_")}

    return series


async def logged(request_ids: list[str]) -> list[RequestLog]:
    assert await sync_to_async(writer.flush)(timeout=10)
    return [log async for log in RequestLog.objects.filter(request_id__in=request_ids).order_by("id")]


def random_path() -> str:
    return f"/{secrets.choice(['agent', 'audio', 'providers'])}/{secrets.token_hex(6)}"


async def test_anonymous_noise_is_counted_by_status_not_logged_nor_labelled(http, scrape):
    before = await scrape()
    answers = []
    for i in range(25):
        method = ["GET", "POST", "PUT", "DELETE", "PROPFIND", "MKCOL"][i % 6]
        answers.append(await http.request(method, random_path()))
    wrong_key = {"Authorization": f"Bearer qpk_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"}
    answers.append(await http.post("/agent/run", json=single("openai"), headers=wrong_key))
    answers.append(await http.post("/agent/run", json=single("openai")))
    answers.append(await http.get("/agent/run", headers=wrong_key))  # a real route, a wrong method
    answers.append(await http.post(random_path(), headers=wrong_key))
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {401, 404, 405}

    after = await scrape()
    assert await logged([r.headers["X-Request-ID"] for r in answers]) == []
    assert [name for name in after.keys() - before.keys() if not name.startswith(NOISE)] == []
    for status in set(statuses):
        key = f'{NOISE}_total{{status="{status}"}}'
        assert after[key] - before.get(key, 0) == statuses.count(status)
    assert len([name for name in after if name.startswith(NOISE)]) <= 2 * 3  # a total and a _created per status


async def test_every_request_with_a_valid_key_is_logged_under_its_route_pattern(http, make_key, scrape, configs):
    use = {"Authorization": f"Bearer {await make_key('use', name='app')}"}
    manage = {"Authorization": f"Bearer {await make_key('manage', name='ops')}"}
    await http.post("/agent/run", json=single("openai"), headers=use)  # the routes' series exist from here
    await http.delete("/providers/config/warm-up", headers=manage)
    before = await scrape()
    answers = [
        await http.post("/agent/" + "x" * 300, json={}, headers=use),
        await http.request("PROPFIND", random_path(), headers=use),
        await http.get("/agent/run", headers=use),
        await http.get("/providers/configs", headers=use),  # valid key, missing scope
        await http.delete(f"/providers/config/{secrets.token_hex(6)}", headers=manage),
        await http.post("/agent/run", json=single(f"nowhere-{secrets.token_hex(4)}"), headers=use),
        await http.post("/agent/run", json=single("openai"), headers=use),
    ]
    logs = await logged([r.headers["X-Request-ID"] for r in answers])
    assert [(log.endpoint, log.status, log.client_key_name) for log in logs] == [
        ("POST unmatched", 404, "app"),
        ("OTHER unmatched", 404, "app"),
        ("GET /agent/run", 405, "app"),
        ("GET /providers/configs", 403, "app"),
        ("DELETE /providers/config/{uid}", 404, "ops"),
        ("POST /agent/run", 404, "app"),
        ("POST /agent/run", 200, "app"),
    ]
    after = await scrape()
    new = sorted(after.keys() - before.keys())
    # Only the patterns above may appear, whatever path, method or provider uid the client sent.
    assert all("unmatched" in name or "/agent/run" in name or "/providers/configs" in name for name in new), new
    assert not [name for name in after if "nowhere-" in name or "xxx" in name]
