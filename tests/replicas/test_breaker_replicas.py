"""The circuit breaker shared by two replicas through Redis, and what each does when Redis goes away."""

import socket
import uuid

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.agent.helpers import chain, single, statuses
from tests.processes import Server, manage
from tests.replicas.test_two_replicas import shared_database  # noqa: F401 (a fixture)
from tests.tcpcut import CuttableProxy

REDIS = ("127.0.0.1", 6379)


async def test_a_breaker_opened_on_one_replica_is_skipped_by_the_other(tmp_path, shared_database, emulator):  # noqa: F811
    proxy = CuttableProxy(REDIS[1]).start()
    env = {"DEBUG": "0", "SECRET_KEY": Fernet.generate_key().decode(), "ALLOWED_HOSTS": "127.0.0.1,localhost",
           "QALBY_ENCRYPTION_KEYS": Fernet.generate_key().decode(), "DATABASE_URL": shared_database,
           "REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0",
           "QALBY_BREAKER_THRESHOLD": "2", "QALBY_BREAKER_COOLDOWN": "60", "QALBY_RETRY_BACKOFF": "0.01"}
    assert manage(tmp_path, "migrate", "--noinput", **env).returncode == 0
    token = manage(tmp_path, "create_api_key", "app", "--scope", "use", "--scope", "manage", **env).stdout.strip()
    down = f"m{uuid.uuid4().hex[:8]}~e503"  # Redis outlives the test: a model of this run only
    with Server(tmp_path / "a", **env) as a, Server(tmp_path / "b", **env) as b:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            for uid, provider in (("main", "openai"), ("backup", "anthropic")):
                config = {"uid": uid, "provider": provider, "api_key": emulator.keys[provider],
                          "base_url": emulator.base_urls[provider]}
                assert (await client.post(f"{a.url}/providers/config", json=config)).status_code == 201

            async def run(replica, model):
                body = chain(single("main", model=model), single("backup", model="up"))
                response = await client.post(f"{replica.url}/agent/run", json=body)
                assert response.status_code == 200, response.text
                return statuses(response.json()["attempts"])

            # Two failed attempts on A open the breaker; B, which never saw them fail, skips at once.
            assert [await run(a, down) for _ in range(2)] == [["error", "ok"]] * 2
            calls = len(emulator.recorded("openai"))
            assert await run(b, down) == ["skipped", "ok"]
            assert len(emulator.recorded("openai")) == calls

            # Redis goes away mid-run: both replicas keep serving, each on its own state.
            proxy.cut()
            alone = f"m{uuid.uuid4().hex[:8]}~e500"
            assert [await run(a, alone) for _ in range(3)] == [["error", "ok"], ["error", "ok"], ["skipped", "ok"]]
            assert await run(b, alone) == ["error", "ok"]  # B never saw A's failures
            assert await run(b, "fine") == ["ok"]
    for replica in (a, b):
        assert replica.output.count("circuit breakers use this replica's own state") == 1, replica.output
        assert "Traceback" not in replica.output and "Task exception was never retrieved" not in replica.output


@pytest.fixture(autouse=True)
def _redis_up():
    try:
        socket.create_connection(REDIS, timeout=1).close()
    except OSError:
        pytest.skip("needs Redis on 127.0.0.1:6379")
