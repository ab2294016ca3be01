"""Start-up behaviour, checked in fresh processes: what an operator sees, and the real servers."""

import os
import re
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.processes import Server, manage, server_command

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def run(args, data_dir, timeout=60, **env):
    base = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "QALBY_ENCRYPTION_KEYS"}}
    base.pop("DATABASE_URL", None)
    base.update({"QALBY_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "qalby_site.settings", **env})
    return subprocess.run(args, cwd=ROOT, env=base, capture_output=True, text=True, timeout=timeout)


def test_production_without_secrets_refuses_to_start(tmp_path):
    result = run([PYTHON, "-c", "import qalby_site.asgi"], tmp_path, DEBUG="0")
    assert result.returncode != 0
    assert "QALBY_ENCRYPTION_KEYS is not set" in result.stderr
    assert "SECRET_KEY is not set" in result.stderr
    assert not (tmp_path / "encryption-key").exists()


def test_production_with_secrets_starts(tmp_path):
    result = run(
        [PYTHON, "-c", "import qalby_site.asgi; print('ok')"],
        tmp_path,
        DEBUG="0",
        SECRET_KEY="x" * 50,
        QALBY_ENCRYPTION_KEYS=f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_secrets_can_come_from_mounted_files(tmp_path):
    (tmp_path / "keys").write_text(Fernet.generate_key().decode() + "\n")
    result = run(
        [PYTHON, "-c", "import qalby_site.asgi; print('ok')"],
        tmp_path, DEBUG="0", SECRET_KEY="s" * 50, QALBY_ENCRYPTION_KEYS_FILE=str(tmp_path / "keys"),
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "maybe"}, "DEBUG must be a boolean"),
        ({"DEBUG": "0", "SECRET_KEY": "s" * 50, "QALBY_ENCRYPTION_KEYS": "not-a-key"}, "entry 1 is not a valid Fernet key"),
        ({"DEBUG": "1", "LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of"),
        ({"DEBUG": "1", "QALBY_MAX_BODY_BYTES": "lots"}, "QALBY_MAX_BODY_BYTES must be an integer"),
    ],
)
def test_bad_settings_stop_start_up_with_a_clear_message(tmp_path, env, message):
    result = run([PYTHON, "-c", "import qalby_site.asgi"], tmp_path, **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_a_command_without_debug_in_a_development_checkout_says_to_add_it(tmp_path):
    assert run([PYTHON, "manage.py", "migrate", "-v0"], tmp_path, DEBUG="1").returncode == 0  # as `make run` does
    result = run([PYTHON, "manage.py", "create_api_key", "x", "--scope", "use"], tmp_path)
    assert result.returncode != 0
    assert "DEBUG=1 .venv/bin/python manage.py" in result.stderr
    assert f"{tmp_path}/encryption-key holds the secret" in result.stderr
    assert "Do not generate a new key" in result.stderr and "generate_key" not in result.stderr
    assert run([PYTHON, "manage.py", "create_api_key", "x", "--scope", "use"], tmp_path, DEBUG="1").returncode == 0


def test_with_stored_provider_keys_a_new_encryption_key_is_never_suggested(tmp_path):
    secrets = {"DEBUG": "0", "SECRET_KEY": "s" * 50, "QALBY_ENCRYPTION_KEYS": Fernet.generate_key().decode()}
    assert run([PYTHON, "manage.py", "migrate", "-v0"], tmp_path, **secrets).returncode == 0
    store = ("from providers.services import provider_config_upsert as up; "
             "up(uid='a', provider='openai', api_key='sk-x'); up(uid='b', provider='groq', api_key='gsk_x')")
    assert run([PYTHON, "manage.py", "shell", "-c", store], tmp_path, **secrets).returncode == 0
    del secrets["QALBY_ENCRYPTION_KEYS"]
    result = run([PYTHON, "manage.py", "create_api_key", "x", "--scope", "use"], tmp_path, **secrets)
    assert result.returncode != 0
    assert "2 provider config(s) in the database hold keys encrypted" in result.stderr
    assert "generate_key" not in result.stderr and "DEBUG=1" not in result.stderr
    # With nothing stored, generating one is the way.
    empty = run([PYTHON, "manage.py", "check"], tmp_path / "new", **secrets)
    assert "Fernet.generate_key()" in empty.stderr


def test_development_generates_a_key_once_and_says_so(tmp_path):
    show = [PYTHON, "-c", "import django; django.setup(); from django.conf import settings; print(settings.QALBY_ENCRYPTION_KEYS[0])"]
    first = run(show, tmp_path, DEBUG="1")
    assert first.returncode == 0, first.stderr
    assert "development secret generated" in first.stderr
    second = run(show, tmp_path, DEBUG="1")
    assert second.stdout == first.stdout  # the same key after a restart
    assert (tmp_path / "encryption-key").read_text().strip() == first.stdout.strip()
    assert oct((tmp_path / "encryption-key").stat().st_mode)[-3:] == "600"


@pytest.mark.parametrize("debug", ["1", "0"])
def test_a_request_warning_is_logged_once_in_our_format(tmp_path, debug):
    secrets = {"SECRET_KEY": "k" * 50, "QALBY_ENCRYPTION_KEYS": Fernet.generate_key().decode()} if debug == "0" else {}
    warn = [PYTHON, "-c", "import django, logging; django.setup(); "
            "logging.getLogger('django.request').warning('Unauthorized: /agent/run')"]
    result = run(warn, tmp_path, DEBUG=debug, **secrets)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Unauthorized: /agent/run") == 1, result.stderr
    assert "WARNING django.request" in result.stderr or '"logger": "django.request"' in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("kind", ["serve", "daphne"])
def test_the_servers_serve_the_api_on_the_embedded_default(tmp_path, kind):
    """The README's flow: migrate, start the server (``make run``'s, and daphne, ``runserver``'s), create
    a key, manage a config with curl-like calls."""
    assert run([PYTHON, "manage.py", "migrate", "--noinput"], tmp_path, DEBUG="1").returncode == 0
    key = run([PYTHON, "manage.py", "create_api_key", "cli", "--scope", "manage"], tmp_path, DEBUG="1")
    token = key.stdout.strip()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update({"QALBY_DATA_DIR": str(tmp_path), "DEBUG": "1"})
    server = subprocess.Popen(server_command(kind, port), cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        assert httpx.get(f"{url}/readyz").json() == {"status": "ok"}
        # The root says what this is and where to go; /docs carries the release pyproject.toml names.
        version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
        index = httpx.get(f"{url}/").json()
        assert index["name"] == "Qalby Proxy" and index["version"] == version
        assert all(httpx.get(f"{url}{index[link]}").status_code == 200 for link in ("docs", "openapi", "health"))
        assert httpx.get(f"{url}/openapi.json").json()["info"]["version"] == version
        assert httpx.get(f"{url}/admin/login/").status_code == 200
        assert httpx.get(f"{url}/static/admin/css/base.css").status_code == 200  # the admin is styled
        assert "/providers/configs" in httpx.get(f"{url}/openapi.json").text
        headers = {"Authorization": f"Bearer {token}"}
        created = httpx.post(f"{url}/providers/config", headers=headers,
                             json={"uid": "demo", "provider": "openai", "api_key": "sk-demo-0123456789abcdef"})
        assert created.status_code == 201
        listed = httpx.get(f"{url}/providers/configs", headers=headers).json()
        assert listed[0]["api_key"] == "sk-…cdef"
        assert httpx.delete(f"{url}/providers/config/demo", headers=headers).status_code == 204
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0].decode()
    assert "sk-demo-0123456789abcdef" not in output
    if kind == "serve":  # daphne runs no lifespan: its own "Listening on" line says it
        assert f"Qalby Proxy ready on {url}: API docs {url}/docs, admin {url}/admin/" in output


READY_PROBE = """
import asyncio, httpx
from qalby_site.asgi import application
async def main():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://localhost") as c:
        for path in ("/healthz", "/readyz"):
            r = await c.get(path)
            print(path, r.status_code, r.json()["status"])
asyncio.run(main())
"""


def test_readiness_fails_when_the_database_is_unreachable(tmp_path):
    result = run([PYTHON, "-c", READY_PROBE], tmp_path, DEBUG="1", DATABASE_URL="postgres://nobody@127.0.0.1:1/none")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["/healthz 200 ok", "/readyz 503 unavailable"]


# Anything that would make a file group- or world-readable after creation is disabled: what is left
# is the mode each file was created with, so a secret written first and chmod-ed after shows up.
CREATION_MODES = """
import os, pathlib
os.umask(0o022)
pathlib.Path.chmod = os.chmod = lambda *args, **kwargs: None
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
"""


def test_development_secrets_and_the_database_are_private_from_their_creation(tmp_path):
    data = tmp_path / "data"
    result = run([PYTHON, "-c", CREATION_MODES], data, DEBUG="1")
    assert result.returncode == 0, result.stderr
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in [data, *data.iterdir()]}
    assert modes.pop("data") == "0o700"
    assert {"django-secret-key", "encryption-key", "qalby.sqlite3"} <= set(modes)
    assert set(modes.values()) == {"0o600"}, modes  # the -wal and -shm files too, when SQLite left them


def test_a_database_made_by_an_earlier_version_is_made_private(tmp_path):
    assert run([PYTHON, "manage.py", "migrate", "--noinput"], tmp_path, DEBUG="1").returncode == 0
    database = tmp_path / "qalby.sqlite3"
    database.chmod(0o644)
    assert run([PYTHON, "manage.py", "check"], tmp_path, DEBUG="1").returncode == 0
    assert oct(database.stat().st_mode & 0o777) == "0o600"


def deploy_check(data_dir, **env):
    production = {"DEBUG": "0", "SECRET_KEY": Fernet.generate_key().decode() + "-long-and-random-enough",
                  "QALBY_ENCRYPTION_KEYS": Fernet.generate_key().decode(), "ALLOWED_HOSTS": "qalby.example.com"}
    result = run([PYTHON, "manage.py", "check", "--deploy"], data_dir, **{**production, **env})
    return result.returncode, re.findall(r"security\.W\d+", result.stdout + result.stderr)


def test_behind_tls_the_deployment_check_finds_nothing_to_warn_about(tmp_path):
    assert deploy_check(tmp_path)[1] == ["security.W004", "security.W008"]  # no HSTS, no redirect
    code, warnings = deploy_check(tmp_path, QALBY_BEHIND_TLS="1", SECURE_HSTS_INCLUDE_SUBDOMAINS="1",
                                  SECURE_HSTS_PRELOAD="1")
    assert (code, warnings) == (0, [])
    code, warnings = deploy_check(tmp_path, QALBY_BEHIND_TLS="1", SECURE_SSL_REDIRECT="off")
    assert "security.W008" in warnings and "security.W004" not in warnings  # each can be turned off alone
    code, warnings = deploy_check(tmp_path, QALBY_BEHIND_TLS="1", SECURE_HSTS_SECONDS="a year")
    assert code != 0


def test_behind_tls_plain_http_is_redirected_except_the_probes(tmp_path):
    assert manage(tmp_path, "migrate", "--noinput").returncode == 0
    with Server(tmp_path, QALBY_BEHIND_TLS="1") as server:
        host = server.url.removeprefix("http://")
        for path, method in [("/admin/login/", "GET"), ("/agent/run", "POST"), ("/providers/configs", "GET")]:
            answer = httpx.request(method, f"{server.url}{path}")
            assert answer.status_code == 301, (path, answer.status_code)
            assert answer.headers["location"] == f"https://{host}{path}"
        # The kubelet and Prometheus come straight to the pod over plain HTTP.
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert httpx.get(f"{server.url}/readyz").status_code == 200
        assert httpx.get(f"{server.url}/metrics").status_code != 301
        # Through the TLS proxy: served, with HSTS, and the admin's cookies kept off plain HTTP.
        secure = httpx.get(f"{server.url}/admin/login/", headers={"X-Forwarded-Proto": "https"})
        assert secure.status_code == 200
        assert secure.headers["strict-transport-security"] == "max-age=31536000"
        assert "secure" in secure.headers["set-cookie"].lower()
        api = httpx.post(f"{server.url}/agent/run", headers={"X-Forwarded-Proto": "https"}, json={})
        assert api.status_code == 401
    # Off by default: a server reached over plain HTTP (docker run -p 8000:8000) answers as before.
    with Server(tmp_path) as server:
        assert httpx.get(f"{server.url}/admin/login/").status_code == 200
        assert httpx.post(f"{server.url}/agent/run", json={}).status_code == 401


def test_several_workers_answer_one_set_of_metrics(tmp_path):
    """A scrape reaches one worker process; it must count what every worker served."""
    assert manage(tmp_path, "migrate", "--noinput").returncode == 0
    metrics = {"Authorization": "Bearer scrape-token"}
    with Server(tmp_path, QALBY_WORKERS="2", QALBY_METRICS_TOKEN="scrape-token") as server:
        for _ in range(30):  # a connection each: the kernel spreads them over both workers
            with httpx.Client(base_url=server.url, timeout=30) as client:
                assert client.post("/agent/run", json={}).status_code == 401
        for _ in range(6):
            with httpx.Client(base_url=server.url, timeout=30) as client:
                text = client.get("/metrics", headers=metrics).text
            assert 'qalby_unauthenticated_requests_total{status="401"} 30.0' in text, text[:2000]
        pids = {line.split()[0] for line in subprocess.run(["ps", "--ppid", str(server.process.pid), "-o", "pid="],
                                                          capture_output=True, text=True).stdout.split()}
        assert len(pids) >= 2  # the workers, beside uvicorn's supervisor
