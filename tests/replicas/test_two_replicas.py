"""Two replicas over one PostgreSQL and one Redis, as the Helm chart runs them."""

import asyncio
import signal
import time

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet

from tests.agent.helpers import single
from tests.processes import Server, manage, postgres_database

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def shared_database():
    """A database of its own on the machine's PostgreSQL, dropped afterwards."""
    with postgres_database("qalby_replicas") as url:
        yield url


async def until(call, holds, within: float = 10):
    """Repeat ``call`` (a request to one replica) until its response ``holds``, and return that response.
    A change made through the other replica reaches this one by a Redis message, a moment later;
    ``within`` is far below the 300 s TTLs below, so only that message can make it hold."""
    deadline = time.monotonic() + within
    while not holds(response := await call()):
        assert time.monotonic() < deadline, f"not seen within {within} s: {response.status_code} {response.text}"
        await asyncio.sleep(0.05)
    return response


def count(dsn: str, sql: str, *params) -> int:
    with psycopg.connect(dsn.replace("postgres://", "postgresql://")) as db:
        return db.execute(sql, params).fetchone()[0]


async def test_replicas_share_configs_logs_and_stop_gracefully(tmp_path, shared_database, emulator):
    # Production settings, the same on both replicas (as the chart gives them from one Secret).
    env = {"DEBUG": "0", "SECRET_KEY": Fernet.generate_key().decode(), "ALLOWED_HOSTS": "127.0.0.1,localhost",
           "QALBY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
           "DATABASE_URL": shared_database, "REDIS_URL": REDIS_URL,
           # A long TTL: only the Redis message can make the other replica see a change this fast.
           "QALBY_CONFIG_TTL": "300", "CLIENT_KEY_CACHE_SECONDS": "300"}
    assert manage(tmp_path, "migrate", "--noinput", **env).returncode == 0
    token = manage(tmp_path, "create_api_key", "app", "--scope", "use", "--scope", "manage", **env).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    with Server(tmp_path / "a", **env) as a, Server(tmp_path / "b", **env) as b:
        async with httpx.AsyncClient(headers=headers, timeout=30) as client:
            config = {"uid": "main", "provider": "openai", "api_key": emulator.keys["openai"],
                      "base_url": emulator.base_urls["openai"]}
            assert (await client.post(f"{a.url}/providers/config", json=config)).status_code == 201
            first = await client.post(f"{b.url}/agent/run", json=single("main"))
            assert first.status_code == 200 and len(emulator.recorded("openai")) == 1

            # Changed through A: B's cached client for "main" must go, though its TTL is 5 minutes.
            config.update(provider="groq", api_key=emulator.keys["groq"], base_url=emulator.base_urls["groq"])
            assert (await client.post(f"{a.url}/providers/config", json=config)).status_code == 200
            second = await until(lambda: client.post(f"{b.url}/agent/run", json=single("main")),
                                 lambda _response: len(emulator.recorded("groq")) > 0)
            assert second.status_code == 200 and len(emulator.recorded("groq")) == 1

            # A route changed through A is used by B's next request (routes: the same invalidation).
            hello = {"route": "assist", "messages": [{"role": "user", "content": "hello"}]}
            route = {"name": "assist", "kind": "chat", "entries": [{"provider_uid": "main", "model": "first"}]}
            assert (await client.post(f"{a.url}/routes", json=route)).status_code == 201
            assert (await client.post(f"{b.url}/agent/run", json=hello)).json()["model"] == "first"
            route["entries"][0]["model"] = "second"
            assert (await client.post(f"{a.url}/routes", json=route)).status_code == 200
            await until(lambda: client.post(f"{b.url}/agent/run", json=hello),
                        lambda response: response.json()["model"] == "second")
            assert (await client.delete(f"{a.url}/routes/assist")).status_code == 204

            # Deleted through B: A answers 404 at once.
            assert (await client.delete(f"{b.url}/providers/config/main")).status_code == 204
            await until(lambda: client.post(f"{a.url}/agent/run", json=single("main")),
                        lambda response: response.status_code == 404)
            assert (await client.post(f"{a.url}/providers/config", json=config)).status_code == 201

            # B is stopped while a 3-second stream is running through it: the stream still ends with done.
            lines = []
            flowing = asyncio.Event()

            async def long_stream():
                body = single("main", model="m~long60~gap50")
                async with client.stream("POST", f"{b.url}/agent/run_stream", json=body) as response:
                    async for line in response.aiter_lines():
                        lines.append(line)
                        if '"delta"' in line:
                            flowing.set()

            streaming = asyncio.create_task(long_stream())
            await asyncio.wait_for(flowing.wait(), timeout=10)
            stopped = asyncio.create_task(asyncio.to_thread(b.stop, signal.SIGTERM))
            await asyncio.wait_for(streaming, timeout=20)
            assert await stopped == 0, b.output
            assert '"type": "done"' in lines[-1]
            stream_id = next(line for line in lines if '"start"' in line).split('"request_id": "')[1].split('"')[0]

            # A keeps serving.
            third = await client.post(f"{a.url}/agent/run", json=single("main"))
            assert third.status_code == 200
    ids = [r.headers["X-Request-ID"] for r in (first, second, third)] + [stream_id]
    # Both replicas' logs are in the same tables, the interrupted stream's included.
    assert count(shared_database, "SELECT count(*) FROM providers_requestlog WHERE request_id = ANY(%s)", ids) == 4
    outcome = count(shared_database, "SELECT count(*) FROM providers_requestlog WHERE request_id = %s AND outcome = 'done'",
                    stream_id)
    assert outcome == 1
