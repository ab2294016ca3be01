"""The request path: no database query and no client construction while nothing changes;
a changed or deleted config takes effect on the next request, here and on other replicas."""

import asyncio
import threading
import time

import openai
import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.db.backends import utils as db_utils

from providers import auth
from providers.models import RequestLog
from providers.requestlogs.batching import writer
from tests.agent.helpers import eventually, single

pytestmark = pytest.mark.django_db(transaction=True)


class _Counts(dict):
    def __init__(self, **counts) -> None:
        super().__init__(**counts)
        self.statements: list[str] = []


@pytest.fixture
def counters(monkeypatch):
    counts = _Counts(queries=0, clients=0)
    execute, init = db_utils.CursorWrapper.execute, openai.AsyncOpenAI.__init__

    def counting_execute(self, *args, **kwargs):
        # The request log writer has its own thread: its inserts are exactly what is off the request path.
        if threading.current_thread().name != "qalby-log-writer":
            counts["queries"] += 1
            counts.statements.append(str(args[0])[:120])  # said when a count is wrong
        return execute(self, *args, **kwargs)

    def counting_init(self, *args, **kwargs):
        counts["clients"] += 1
        return init(self, *args, **kwargs)

    monkeypatch.setattr(db_utils.CursorWrapper, "execute", counting_execute)
    monkeypatch.setattr(openai.AsyncOpenAI, "__init__", counting_init)
    return counts


async def test_warm_requests_make_no_query_and_build_no_client(user, configs, counters, settings):
    # Lifetimes longer than the test: re-reading a config or re-checking a key is a query too.
    settings.QALBY_CONFIG_TTL = settings.CLIENT_KEY_CACHE_SECONDS = 60
    for _ in range(2):  # warm: key lookup, config read, client built once
        assert (await user.post("/agent/run", json=single("openai"))).status_code == 200
    assert counters["clients"] == 1
    # The first use of the key is recorded in the background (once a minute): let it land first.
    assert await eventually(lambda: not auth._touch_tasks)
    counters.update(queries=0, clients=0)
    responses = await asyncio.gather(*(user.post("/agent/run", json=single("openai")) for _ in range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    async with user.stream("POST", "/agent/run_stream", json=single("openai")) as response:
        assert '"done"' in (await response.aread()).decode()
    assert counters == {"queries": 0, "clients": 0}, counters.statements
    await asyncio.to_thread(writer.flush)
    assert await RequestLog.objects.filter(endpoint="POST /agent/run").acount() == 12  # logged all the same


async def test_a_config_changed_through_the_api_is_used_by_the_next_request(user, configs, make_key, emulator):
    assert (await user.post("/agent/run", json=single("main", model="m"))).status_code == 404
    manage = {"Authorization": f"Bearer {await make_key('manage')}"}
    body = {"uid": "main", "provider": "openai", "api_key": emulator.keys["openai"], "base_url": emulator.base_urls["openai"]}
    assert (await user.post("/providers/config", json=body, headers=manage)).status_code == 201
    first = await user.post("/agent/run", json=single("main"))
    assert first.status_code == 200

    body.update(provider="groq", api_key=emulator.keys["groq"], base_url=emulator.base_urls["groq"])
    assert (await user.post("/providers/config", json=body, headers=manage)).status_code == 200
    await user.post("/agent/run", json=single("main"))
    assert len(emulator.recorded("groq")) == 1

    assert (await user.delete("/providers/config/main", headers=manage)).status_code == 204
    assert (await user.post("/agent/run", json=single("main"))).status_code == 404


def _update_behind_the_cache(uid: str, **fields) -> None:
    # What another replica's write looks like to this process: a row change without our signal.
    with connection.cursor() as cursor:
        sets = ", ".join(f"{name} = %s" for name in fields)
        cursor.execute(f"UPDATE providers_providerconfig SET {sets}, updated_at = CURRENT_TIMESTAMP WHERE uid = %s",
                       [*fields.values(), uid])


def _delete_behind_the_cache(uid: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM providers_providerconfig WHERE uid = %s", [uid])


async def test_changes_made_elsewhere_are_seen_within_the_ttl(user, configs, settings, emulator):
    settings.QALBY_CONFIG_TTL = ttl = 2.0

    async def until(status: int):
        """Ask until the answer has ``status``: (that response, when it was sent). The first such answer
        read the config again, so its copy is cached from then on, for the TTL."""
        deadline = time.monotonic() + ttl + 5
        while True:
            sent = time.monotonic()
            response = await user.post("/agent/run", json=single("openai"))
            if response.status_code == status:
                return response, sent
            assert time.monotonic() < deadline, f"still {response.status_code}, {ttl + 5} s after a {ttl} s TTL"
            await asyncio.sleep(0.1)

    assert (await user.post("/agent/run", json=single("openai"))).status_code == 200
    await sync_to_async(_update_behind_the_cache)("openai", enabled=False)
    response, read_at = await until(503)
    assert "disabled" in response.json()["detail"]

    await sync_to_async(_delete_behind_the_cache)("openai")
    response = await user.post("/agent/run", json=single("openai"))
    if time.monotonic() < read_at + ttl:  # answered before the copy read at ``read_at`` could expire
        assert response.status_code == 503  # still cached
    await until(404)


async def test_a_burst_of_requests_starts_no_thread_per_request(user, configs, monkeypatch, settings):
    """Django's own ASGI handler starts a thread for every request (its thread-sensitive context, the
    sync signal receivers, closing the response); the API's handler does that work inline."""
    settings.QALBY_CONFIG_TTL = settings.CLIENT_KEY_CACHE_SECONDS = 60
    for _ in range(2):  # warm: key lookup, config read and the database thread start once
        assert (await user.post("/agent/run", json=single("openai"))).status_code == 200
    started = []
    start = threading.Thread.start

    def counting_start(self):
        started.append(self.name)
        return start(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    for _ in range(5):  # in waves: the SDK's connection pool is warm after the first
        responses = await asyncio.gather(*(user.post("/agent/run", json=single("openai")) for _ in range(10)))
        assert [r.status_code for r in responses] == [200] * 10
        async with user.stream("POST", "/agent/run_stream", json=single("openai")) as response:
            assert '"done"' in (await response.aread()).decode()
        assert (await user.get("/healthz")).status_code == 200
    assert len(started) <= 5, started  # 60 requests; the default executor may grow for new connections
