"""The image's entry point, outside Docker (no engine here): the files .dockerignore lets into the
image, the Dockerfile's build step (collectstatic with no secret), then the commands a container and
the chart's migration job run: migrate, serve, manage, healthcheck, and a stop by SIGTERM. On the
suite's PostgreSQL pass the server runs on PostgreSQL, as in the chart; on the SQLite pass on SQLite.
The image installs requirements.lock alone, so these commands run with every package that only
requirements-dev.lock adds hidden from them.
"""

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from functools import cache
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
HOST = "api.qalby.example.com"  # allowed by the ".qalby.example.com" pattern below


def image_tree(dest: Path) -> Path:
    """Copy what `COPY . .` would copy: .dockerignore is an allowlist of top-level names."""
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [rule for rule in rules if rule and not rule.startswith("#")]
    assert rules[0] == "*", ".dockerignore must start by excluding everything"
    for rule in rules[1:]:
        if rule.startswith("**/"):
            continue  # the caches, excluded below
        assert rule.startswith("!"), f"unexpected .dockerignore rule {rule!r}"
        source = ROOT / rule[1:].rstrip("/")
        if not source.exists():
            continue  # as in Docker: an allowed name that is not there adds nothing
        if source.is_dir():
            shutil.copytree(source, dest / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, dest / source.name)
    return dest


def dev_only_modules() -> set[str]:
    """Top-level modules of the distributions requirements-dev.lock adds (pytest, ruff, pillow...)."""
    lines = (ROOT / "requirements-dev.lock").read_text().splitlines()
    names = {line.split("==")[0].strip().lower() for line in lines if line.strip() and not line.startswith("#")}
    modules = {module for module, dists in metadata.packages_distributions().items()
               if any(dist.lower() in names for dist in dists)}
    assert {"pytest", "PIL", "ruff"} <= modules
    return modules


@cache
def without_dev_packages() -> str:
    """A PYTHONPATH entry whose sitecustomize makes the dev-only packages unimportable, as in the image."""
    folder = Path(tempfile.mkdtemp(prefix="image-site-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n"
        f"_HIDDEN = {sorted(dev_only_modules())!r}\n"
        "class _NotInImage:\n"
        "    @staticmethod\n"
        "    def find_spec(name, path=None, target=None):\n"
        "        if name.partition('.')[0] in _HIDDEN:\n"
        "            raise ModuleNotFoundError(f'{name} is not in the image (requirements-dev.lock)', name=name)\n"
        "sys.meta_path.insert(0, _NotInImage)\n"
    )
    return str(folder)


def environment(**values: str) -> dict[str, str]:
    """The process environment less anything that configures the app, plus `values`."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "SECRET_KEY", "QALBY_", "DATABASE_URL",
                                                                     "REDIS_URL", "ALLOWED_HOSTS", "HOST", "PORT"))}
    keep["PATH"] = f"{VENV_BIN}{os.pathsep}{keep.get('PATH', '')}"  # the image's PATH starts with its venv
    keep["PYTHONDONTWRITEBYTECODE"] = "1"
    keep["PYTHONPATH"] = without_dev_packages()
    return {**keep, **values}


def entrypoint(tree: Path, *args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(tree / "docker" / "entrypoint.sh"), *args], env=env, cwd="/",
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The image's /app after the Dockerfile's build stage."""
    tree = image_tree(tmp_path_factory.mktemp("app"))
    # As in the Dockerfile: production static storage, no secret, a throwaway data folder.
    build_env = environment(DEBUG="0", QALBY_DATA_DIR=str(tmp_path_factory.mktemp("build-data")))
    result = entrypoint(tree, "manage", "collectstatic", "--noinput", env=build_env)
    assert result.returncode == 0, result.stderr
    assert (tree / "staticfiles" / "staticfiles.json").exists()
    return tree


@pytest.fixture
def database() -> dict[str, str]:
    """On the suite's PostgreSQL pass, a fresh database of the server (the chart's case); on the
    SQLite pass nothing, so the embedded SQLite default is used (`docker run` without DATABASE_URL)."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        yield {}
        return
    import psycopg

    name = f"qalby_entrypoint_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield {"DATABASE_URL": urlsplit(url)._replace(path=f"/{name}").geturl()}
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def production(tmp_path, database) -> dict[str, str]:
    return environment(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        QALBY_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS=".qalby.example.com",
        QALBY_DATA_DIR=str(tmp_path / "data"),
        HOST="127.0.0.1",
        PORT=str(free_port()),
        **database,
    )


def wait_until_up(url: str, server: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(f"{url}/healthz", headers={"Host": HOST}, timeout=2)
            return
        except httpx.TransportError:
            if server.poll() is not None:
                raise AssertionError(f"the server exited with {server.returncode}: {server.stdout.read()}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_migrate_serve_manage_and_stop_cleanly(built, production):
    migrated = entrypoint(built, "migrate", env=production)
    assert migrated.returncode == 0, migrated.stderr
    assert "Applying providers.0001_initial... OK" in migrated.stdout
    down = entrypoint(built, "healthcheck", env=production)
    assert down.returncode == 1
    assert "no answer from 127.0.0.1" in down.stderr

    url = f"http://127.0.0.1:{production['PORT']}"
    server = subprocess.Popen([str(built / "docker" / "entrypoint.sh"), "serve"], env=production, cwd="/",
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_up(url, server)
        host = {"Host": HOST}
        assert httpx.get(f"{url}/healthz", headers=host).json() == {"status": "ok"}
        assert httpx.get(f"{url}/readyz", headers=host).json() == {"status": "ok"}
        # Django's host check applies to the API; probes and scrapers may come by pod IP.
        refused = httpx.get(f"{url}/providers/configs", headers={"Host": "10.0.0.7:8000"})
        assert refused.status_code == 400
        assert refused.json()["detail"] == "bad request: host not allowed"
        assert httpx.get(f"{url}/healthz", headers={"Host": "10.0.0.7:8000"}).status_code == 200
        # Docker's HEALTHCHECK sends an allowed Host header, so it passes against a production server.
        up = entrypoint(built, "healthcheck", env=production)
        assert up.returncode == 0, up.stderr
        # The admin renders with the static files collected at build time (hashed names, manifest).
        login = httpx.get(f"{url}/admin/login/", headers=host)
        assert login.status_code == 200
        css = httpx.get(f"{url}/static/admin/css/base.css", headers=host)
        assert css.status_code == 200 and "body" in css.text
        # `manage` reaches the same database as the running server.
        created = entrypoint(built, "manage", "create_api_key", "ops", "--scope", "manage", env=production)
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip()
        listed = httpx.get(f"{url}/providers/configs", headers={**host, "Authorization": f"Bearer {token}"})
        assert listed.status_code == 200 and listed.json() == []
    finally:
        server.send_signal(signal.SIGTERM)  # what Docker and Kubernetes send; `exec` made the server its receiver
        started = time.monotonic()
        output = server.communicate(timeout=30)[0]
        stopped_in = time.monotonic() - started
    assert server.returncode == 0, output
    # On the PostgreSQL pass, nothing fell back to the embedded SQLite.
    assert (Path(production["QALBY_DATA_DIR"]) / "qalby.sqlite3").exists() == ("DATABASE_URL" not in production)
    assert stopped_in < 15, stopped_in  # idle, it stops at once: far from the 25 s shutdown grace it would allow
    assert "Traceback" not in output
    assert production["SECRET_KEY"] not in output and production["QALBY_ENCRYPTION_KEYS"] not in output


def test_the_commands_run_without_the_dev_packages(tmp_path):
    hidden = subprocess.run([sys.executable, "-c", "import pytest"], env=environment(), capture_output=True, text=True)
    assert hidden.returncode == 1 and "pytest is not in the image" in hidden.stderr
    assert "pytest" not in (ROOT / "requirements.lock").read_text()
    assert "requirements-dev" not in (ROOT / "Dockerfile").read_text()


def test_production_without_secrets_refuses_to_migrate(built, tmp_path):
    result = entrypoint(built, "migrate", env=environment(DEBUG="0", QALBY_DATA_DIR=str(tmp_path)))
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert "QALBY_ENCRYPTION_KEYS is not set" in result.stderr


def test_secrets_can_be_mounted_files(built, tmp_path):
    """How the chart passes them: NAME_FILE naming a file of a mounted Secret."""
    (tmp_path / "SECRET_KEY").write_text(secrets.token_urlsafe(50) + "\n")
    (tmp_path / "QALBY_ENCRYPTION_KEYS").write_text(Fernet.generate_key().decode() + "\n")
    env = environment(DEBUG="0", QALBY_DATA_DIR=str(tmp_path / "data"),
                      SECRET_KEY_FILE=str(tmp_path / "SECRET_KEY"),
                      QALBY_ENCRYPTION_KEYS_FILE=str(tmp_path / "QALBY_ENCRYPTION_KEYS"))
    result = entrypoint(built, "migrate", env=env)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("args", "message"), [(["build"], "unknown command: build"), (["manage"], "usage:")])
def test_wrong_commands_say_how_to_use_it(built, args, message, tmp_path):
    result = entrypoint(built, *args, env=environment(QALBY_DATA_DIR=str(tmp_path)))
    assert result.returncode == 64
    assert message in result.stderr
    assert "serve [--workers N|auto] | migrate | manage <command> [args] | healthcheck" in result.stderr
