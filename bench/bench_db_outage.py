"""Load through a PostgreSQL outage: what clients get while the database is away, and what is logged.

Runs the production server (``python -m qalby_site.serve``, production settings) on a throwaway
PostgreSQL database that it reaches through a TCP proxy of this script's (tests/tcpcut.py), with the
providers emulated (tests/emulator). A steady load (``--rate`` requests a second: chats, streamed
chats and config reads, in turn) runs for ``--seconds``; the proxy is cut for ``--cut`` seconds in the
middle. Prints, for before, during and after the cut, the answers by kind and status, then how many of
the answered requests are in the request logs once the database is back.

    .venv/bin/python bench/bench_db_outage.py [--rate 20] [--seconds 30] [--cut 10]

Needs PostgreSQL on 127.0.0.1:5432 (trust auth), as the tests do.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

from harness import free_port, wait_http  # noqa: E402

from tests.emulator.core import DEFAULT_KEYS  # noqa: E402
from tests.tcpcut import CuttableProxy  # noqa: E402

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PYTHON = sys.executable


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


async def load(url: str, token: str, rate: float, seconds: float, cut_at: float, cut_for: float,
               proxy: CuttableProxy) -> tuple[dict, list[str]]:
    tally: dict[str, collections.Counter] = {phase: collections.Counter() for phase in ("before", "during", "after")}
    answered: list[str] = []
    chat = {"provider_uid": "main", "model": "m~lat20", "messages": [{"role": "user", "content": "hi"}]}
    stream = {**chat, "model": "m~gap20"}
    started = time.monotonic()

    def phase() -> str:
        elapsed = time.monotonic() - started
        return "before" if elapsed < cut_at else "during" if elapsed < cut_at + cut_for else "after"

    async def one(client: httpx.AsyncClient, n: int) -> None:
        kind = ("chat", "stream", "configs")[n % 3]
        when = phase()
        try:
            if kind == "chat":
                response = await client.post("/agent/run", json=chat)
            elif kind == "stream":
                response = await client.post("/agent/run_stream", json=stream)
                last = json.loads(response.text.strip().splitlines()[-1]) if response.status_code == 200 else {}
                if response.status_code == 200 and last.get("type") != "done":
                    kind = "stream-cut"
            else:
                response = await client.get("/providers/configs")
        except httpx.TransportError as error:
            tally[when][f"{kind} {type(error).__name__}"] += 1
            return
        tally[when][f"{kind} {response.status_code}"] += 1
        answered.append(response.headers["X-Request-ID"])

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        tasks, n, cut, restored = [], 0, False, False
        while (elapsed := time.monotonic() - started) < seconds:
            if not cut and elapsed >= cut_at:
                proxy.cut()
                cut = True
            if cut and not restored and elapsed >= cut_at + cut_for:
                proxy.restore()
                restored = True
            tasks.append(asyncio.create_task(one(client, n)))
            n += 1
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        await asyncio.gather(*tasks)
    return tally, answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--cut", type=float, default=10)
    options = parser.parse_args()

    name = f"qalby_bench_outage_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    emulator = server = None
    try:
        with CuttableProxy(5432) as proxy:
            env = {**os.environ, "DEBUG": "0", "SECRET_KEY": Fernet.generate_key().decode(),
                   "QALBY_ENCRYPTION_KEYS": Fernet.generate_key().decode(), "ALLOWED_HOSTS": "127.0.0.1",
                   "DJANGO_SETTINGS_MODULE": "qalby_site.settings", "LOG_LEVEL": "WARNING",
                   "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}"}
            setup = subprocess.run([PYTHON, "-c", "import django; django.setup(); from django.core.management import "
                                    "call_command; call_command('migrate', verbosity=0); from providers.services import "
                                    "client_key_create; print(client_key_create(name='bench', scopes=['use', 'manage'])[1])"],
                                   cwd=ROOT, env=env, capture_output=True, text=True, check=True)
            token = setup.stdout.strip().splitlines()[-1]
            emulator_port, port = free_port(), free_port()
            emulator = start(["-m", "tests.emulator", "--port", str(emulator_port)], env)
            served = {**env, "DATABASE_URL": f"postgres://postgres@127.0.0.1:{proxy.port}/{name}"}
            server = start(["-m", "qalby_site.serve", "--host", "127.0.0.1", "--port", str(port)], served)
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/healthz", server)
            wait_http(f"http://127.0.0.1:{emulator_port}/openai/v1/models", emulator)
            config = {"uid": "main", "provider": "openai", "api_key": DEFAULT_KEYS["openai"],
                      "base_url": f"http://127.0.0.1:{emulator_port}/openai/v1"}
            httpx.post(f"{url}/providers/config", json=config, headers={"Authorization": f"Bearer {token}"},
                       timeout=30).raise_for_status()
            cut_at = (options.seconds - options.cut) / 2
            tally, answered = asyncio.run(load(url, token, options.rate, options.seconds, cut_at, options.cut, proxy))
            time.sleep(3)  # the writer's backlog lands
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}") as db:
            logged = db.execute("SELECT count(*) FROM providers_requestlog WHERE request_id = ANY(%s)",
                                (answered,)).fetchone()[0]
    finally:
        for child in (server, emulator):
            if child is not None:
                child.terminate()
                child.wait(30)
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(f"{options.rate:g} requests/s for {options.seconds:g} s; PostgreSQL cut for {options.cut:g} s "
          f"from {cut_at:g} s")
    for phase, counts in tally.items():
        print(f"  {phase:<7} " + ", ".join(f"{key}: {value}" for key, value in sorted(counts.items())))
    print(f"  answered {len(answered)}, in the request logs {logged}")
    log = server.stdout.read() if server is not None and server.stdout else ""
    print(f"  server log: {log.count('Traceback')} tracebacks, "
          f"{log.count('database unavailable (')} 'database unavailable', {log.count('database available again')} "
          "'database available again'")


if __name__ == "__main__":
    main()
