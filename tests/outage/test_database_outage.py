"""A PostgreSQL outage under the server, as an operator meets it: the server reaches its database
through a TCP proxy of the test's own, which the test cuts (connections reset, new ones refused)
and restores. What a cached config and key can serve is served; the rest is a 503 with
Retry-After; nothing is a 500, nothing is lost from the logs, and the log says it twice."""

import asyncio
import json
import re
import signal

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet

from tests.agent.helpers import chain, single
from tests.processes import Server, manage
from tests.replicas.test_two_replicas import shared_database  # noqa: F401 (a fixture)
from tests.tcpcut import CuttableProxy

METRICS_TOKEN = "outage-metrics"
ADMIN_PASSWORD = "outage-admin-password-1"


_SESSION = """
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
user = get_user_model().objects.get(username="admin")
session = SessionStore()
session.update({"_auth_user_id": str(user.pk), "_auth_user_hash": user.get_session_auth_hash(),
                "_auth_user_backend": "django.contrib.auth.backends.ModelBackend"})
session.create()
print(session.session_key)
"""


def admin_session(data_dir, env) -> httpx.Client:
    """A logged-in admin, by its session cookie (the login page needs the collected static files of an image)."""
    made = manage(data_dir, "shell", "-c", _SESSION, **env)
    assert made.returncode == 0, made.stderr
    return httpx.Client(headers={"Cookie": f"sessionid={made.stdout.strip().splitlines()[-1]}"}, timeout=30)


def rows(dsn: str, sql: str, *params) -> list[tuple]:
    with psycopg.connect(dsn.replace("postgres://", "postgresql://")) as db:
        return db.execute(sql, params).fetchall()


async def stream_lines(client: httpx.AsyncClient, url: str, body: dict) -> tuple[int, list[dict]]:
    async with client.stream("POST", url, json=body) as response:
        lines = [json.loads(line) async for line in response.aiter_lines() if line.strip()]
        return response.status_code, lines


@pytest.fixture
def outage_server(tmp_path, shared_database, emulator):  # noqa: F811
    """The server in production mode on its own PostgreSQL database, reached through a cuttable proxy,
    with two provider configs and two client keys (one used before the cut, one not)."""
    env = {"DEBUG": "0", "SECRET_KEY": Fernet.generate_key().decode(), "ALLOWED_HOSTS": "127.0.0.1,localhost",
           "QALBY_ENCRYPTION_KEYS": Fernet.generate_key().decode(), "DATABASE_URL": shared_database}
    assert manage(tmp_path, "migrate", "--noinput", **env).returncode == 0
    used = manage(tmp_path, "create_api_key", "app", "--scope", "use", "--scope", "manage", **env).stdout.strip()
    unused = manage(tmp_path, "create_api_key", "late", "--scope", "use", **env).stdout.strip()
    made = manage(tmp_path, "createsuperuser", "--noinput", "--username", "admin", "--email", "a@example.com",
                  DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD, **env)
    assert made.returncode == 0, made.stderr
    with CuttableProxy(5432) as proxy:
        # Caches that expire within the cut: only the outage path can keep them serving.
        served = {**env, "DATABASE_URL": shared_database.replace(":5432/", f":{proxy.port}/"),
                  "QALBY_CONFIG_TTL": "0.2", "CLIENT_KEY_CACHE_SECONDS": "0.5", "QALBY_METRICS_TOKEN": METRICS_TOKEN,
                  "QALBY_LOG_BATCH_SECONDS": "0.2"}
        with Server(tmp_path / "server", **served) as server:
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {used}"},
                              timeout=30) as client:
                for uid, provider in (("main", "openai"), ("backup", "anthropic")):
                    config = {"uid": uid, "provider": provider, "api_key": emulator.keys[provider],
                              "base_url": emulator.base_urls[provider]}
                    assert client.post("/providers/config", json=config).status_code == 201
            yield server, proxy, used, unused, served


async def test_a_database_outage_costs_no_request_a_cache_can_serve(outage_server, shared_database, tmp_path):  # noqa: F811
    server, proxy, used, unused, env = outage_server
    admin = admin_session(tmp_path, env)
    export = f"{server.url}/admin/providers/requestlog/export.csv"
    assert admin.get(export).status_code == 200
    answered: list[httpx.Response] = []
    streamed: list[str] = []
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {used}"}, timeout=30) as client:
        async def chat(body, url="/agent/run"):
            response = await client.post(url, json=body)
            answered.append(response)
            return response

        assert (await chat(single("main"))).status_code == 200
        assert (await chat(single("backup"))).status_code == 200
        assert (await client.get("/readyz")).json() == {"status": "ok"}

        proxy.cut()
        during = []
        for _ in range(3):  # over more than one retry interval and every cache lifetime
            during += await asyncio.gather(chat(single("main")), chat(chain(single("main", model="m~e503"),
                                                                           single("backup"))))
            status, lines = await stream_lines(client, "/agent/run_stream", single("backup"))
            assert status == 200 and lines[-1]["type"] == "done", lines
            streamed.append(lines[0]["request_id"])
            await asyncio.sleep(0.6)
        assert [r.status_code for r in during] == [200] * len(during), [r.text for r in during]
        assert during[1].json()["provider_uid"] == "backup"

        # What needs the database: 503 with Retry-After and a detail, never a 500.
        refused = [
            await client.get("/providers/configs"),
            await client.post("/providers/config", json={"uid": "new", "provider": "openai", "api_key": "sk-x"}),
            await client.delete("/providers/config/main"),
            await client.post("/agent/run", json=single("never-read")),  # a config this server never read
            await client.post("/agent/run", json=single("main"), headers={"Authorization": f"Bearer {unused}"}),
        ]
        for response in refused:
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) >= 1
            assert "database is unavailable" in response.json()["detail"]
            assert response.json()["request_id"] == response.headers["X-Request-ID"]
        assert "not verified this API key" in refused[-1].json()["detail"]

        page = admin.get(export)  # the admin reads its session from the database
        assert page.status_code == 503 and int(page.headers["Retry-After"]) >= 1, page.text

        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded", ready.text
        metrics = (await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
        assert "qalby_database_available 0.0" in metrics
        assert re.search(r'qalby_stale_reads_total\{what="client_key"\} [1-9]', metrics)
        assert re.search(r'qalby_stale_reads_total\{what="provider_config"\} [1-9]', metrics)

        proxy.restore()
        for _ in range(100):
            if (await client.get("/readyz")).json().get("status") == "ok":
                break
            await asyncio.sleep(0.1)
        assert (await client.get("/readyz")).json() == {"status": "ok"}
        assert (await chat(single("main"))).status_code == 200
        assert (await client.get("/providers/configs")).status_code == 200
        back = await client.post("/agent/run", json=single("main"), headers={"Authorization": f"Bearer {unused}"})
        assert back.status_code == 200
        metrics = (await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
        assert "qalby_database_available 1.0" in metrics
        assert admin.get(export).status_code == 200

    assert server.stop(signal.SIGTERM) == 0, server.output
    # Every request of the window is in the logs, the refused ones included.
    ids = [r.headers["X-Request-ID"] for r in answered + refused + [back]] + streamed
    logged = rows(shared_database, "SELECT request_id, status FROM providers_requestlog WHERE request_id = ANY(%s)", ids)
    assert sorted(request_id for request_id, _ in logged) == sorted(ids)
    assert sorted(status for _, status in logged if status >= 500) == [503] * len(refused)
    # The process recorded the outage for the admin's overview when the database was back.
    ((seconds, stale),) = rows(shared_database, "SELECT EXTRACT(EPOCH FROM ended_at - began_at), stale_reads "
                                                "FROM providers_databaseoutage")
    assert 1 < seconds < 60 and stale > 0
    # Said once when it began and once when it ended; no traceback, no task error.
    output = server.output
    assert output.count("database unavailable (") == 1, output
    assert output.count("database available again") == 1, output
    assert "Traceback" not in output and "Task exception was never retrieved" not in output, output


async def test_a_replica_with_nothing_cached_is_not_ready_during_an_outage(outage_server, tmp_path):
    _, proxy, used, _, env = outage_server
    with Server(tmp_path / "fresh", **env) as fresh:
        proxy.cut()
        async with httpx.AsyncClient(base_url=fresh.url, timeout=30) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["database"] == "unavailable", ready.text
            refused = await client.post("/agent/run", json=single("main"), headers={"Authorization": f"Bearer {used}"})
            assert refused.status_code == 503 and "Retry-After" in refused.headers, refused.text
        proxy.restore()
    assert "Traceback" not in fresh.output, fresh.output
