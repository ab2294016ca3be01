"""The project run as separate processes, as an operator runs it: manage.py commands and the server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SECRET_VARS = {"DEBUG", "SECRET_KEY", "QALBY_ENCRYPTION_KEYS", "DATABASE_URL"}


@contextlib.contextmanager
def postgres_database(prefix: str, server: str = "postgres://postgres@127.0.0.1:5432/postgres") -> Iterator[str]:
    """A database of its own on the PostgreSQL server of ``server`` (the URL of any database there),
    dropped afterwards: its URL, for a server process's DATABASE_URL."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    parts = urlsplit(server)
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def environment(data_dir: Path, **env: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    base.update({"QALBY_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "qalby_site.settings", **env})
    return base


def run(args, data_dir: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=environment(data_dir, **env), capture_output=True, text=True,
                          timeout=timeout)


def manage(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return run([PYTHON, "manage.py", *args], data_dir, **{"DEBUG": "1", **env})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(server: str, port: int, *options: str) -> list[str]:
    """``serve``: the production server (``python -m qalby_site.serve``, what ``make run`` and the image
    start); ``daphne``: what ``manage.py runserver`` serves with."""
    if server == "daphne":
        return [str(Path(PYTHON).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port), *options,
                "qalby_site.asgi:application"]
    return [PYTHON, "-m", "qalby_site.serve", "--host", "127.0.0.1", "--port", str(port), *options]


class Server:
    """``with Server(data_dir) as server:`` -> the project served on a free loopback port, in its own process."""

    def __init__(self, data_dir: Path, server: str = "serve", options: tuple[str, ...] = (), **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = environment(data_dir, **{"DEBUG": "1", **env})
        self.command = server_command(server, self.port, *options)
        self.output = ""

    def __enter__(self) -> Server:
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        # Generous: several workers starting on a loaded two-core machine took over 30 s once.
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{self.url}/healthz").status_code == 200:
                    return self
            except httpx.TransportError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"the server did not start:\n{self.output}") from None
                time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.output += self.process.communicate(timeout=timeout)[0].decode()
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.output += self.process.communicate()[0].decode()
        return self.process.returncode

    def __exit__(self, *exc) -> None:
        self.stop()


_SETUP = """
import django; django.setup()
from django.core.management import call_command
from providers.services import client_key_create
call_command("migrate", verbosity=0)
print(client_key_create(name="server", scopes=["use", "manage"])[1])
"""


def migrated_with_key(data_dir: Path) -> str:
    """Migrate the SQLite database in ``data_dir`` and return a new 'use'+'manage' client token
    (one process for both steps: each Django start-up costs seconds)."""
    setup = run([PYTHON, "-c", _SETUP], data_dir, DEBUG="1")
    assert setup.returncode == 0, setup.stderr
    return setup.stdout.strip().splitlines()[-1]
