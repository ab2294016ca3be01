"""The flush at exit is bounded: what is queued is written when the database answers, and a database
that does not answer (a table held locked) costs the stop at most QALBY_LOG_FLUSH_SECONDS in all (the
shutdown hook's flush and the one at interpreter exit share it); then the loss is said, once, and the
process exits. On the suite's kind of database (``server_database``)."""

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import time

import httpx
import psycopg
import pytest

from tests.processes import PYTHON, ROOT, Server, environment, manage

FLUSH_SECONDS = 3


@contextlib.contextmanager
def request_logs_locked(db):
    """No write reaches the request log table until the block ends, as under a long migration or a
    database stuck on its disk: the writer's INSERT waits (PostgreSQL) or times out and is retried (SQLite)."""
    if db.vendor == "postgresql":
        with psycopg.connect(db.url.replace("postgres://", "postgresql://", 1)) as holder:
            holder.execute("LOCK TABLE providers_requestlog IN ACCESS EXCLUSIVE MODE")
            yield
            holder.rollback()
    else:
        holder = sqlite3.connect(db.path, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            yield
            holder.execute("ROLLBACK")
        finally:
            holder.close()


_QUEUE_AND_EXIT = """
import time
from providers.requestlogs.batching import submit
from providers.requestlogs.entry import Entry
for n in range(20):
    entry = Entry(request_id=f"atexit-{n}", endpoint="POST /agent/run")
    entry.finish(200)
    submit(entry)
print("queued at", time.time(), flush=True)
"""


def queue_and_exit(tmp_path, db) -> tuple[subprocess.CompletedProcess, float]:
    """A process that queues 20 request logs and returns: only the flush at interpreter exit writes them.
    Also how long its exit took, from the moment they were queued."""
    env = environment(tmp_path, DEBUG="1", QALBY_LOG_BATCH_SECONDS="30", QALBY_LOG_BATCH_SIZE="1000",
                      QALBY_LOG_FLUSH_SECONDS=str(FLUSH_SECONDS), **db.env)
    process = subprocess.Popen([PYTHON, "manage.py", "shell", "-c", _QUEUE_AND_EXIT], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Far above the bound: a flush without one waits for the lock, which outlasts this.
        output, _ = process.communicate(timeout=FLUSH_SECONDS + 60)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"the process was still flushing long after its flush timeout:\n{output}")
    ended = time.time()
    queued_at = float(output.split("queued at ", 1)[1].split()[0])
    return subprocess.CompletedProcess(process.args, process.returncode, output), ended - queued_at


def test_what_is_queued_at_exit_is_written_by_the_exit_flush(tmp_path, server_database):
    db = server_database
    assert manage(tmp_path, "migrate", "--noinput", **db.env).returncode == 0
    done, _ = queue_and_exit(tmp_path, db)
    assert done.returncode == 0, done.stdout
    assert sorted(db.logged(f"atexit-{n}" for n in range(20))) == sorted(f"atexit-{n}" for n in range(20))
    assert "not written at shutdown" not in done.stdout, done.stdout


def test_a_stuck_database_holds_the_exit_flush_no_longer_than_its_timeout(tmp_path, server_database):
    db = server_database
    assert manage(tmp_path, "migrate", "--noinput", **db.env).returncode == 0
    with request_logs_locked(db):
        done, took = queue_and_exit(tmp_path, db)
    assert done.returncode == 0, done.stdout
    assert took < FLUSH_SECONDS + 10, (took, done.stdout)
    assert "request logs not written at shutdown: 20 record(s) lost" in done.stdout, done.stdout
    assert db.logged(f"atexit-{n}" for n in range(20)) == []  # the loss said is the loss there is


async def test_a_server_stopped_on_a_stuck_database_exits_within_one_flush_timeout_and_says_what_it_lost(
        tmp_path, emulator, server_database):
    db = server_database
    assert manage(tmp_path, "migrate", "--noinput", **db.env).returncode == 0
    token = manage(tmp_path, "create_api_key", "stuck", "--scope", "use", "--scope", "manage", **db.env).stdout.strip()
    # A batch window longer than the test: the records wait in the writer until the stop flushes them.
    # A flush timeout long enough to tell one from two (the shutdown hook's, then the one at exit).
    flush = 12
    with Server(tmp_path, QALBY_LOG_BATCH_SECONDS="30", QALBY_LOG_BATCH_SIZE="1000",
                QALBY_LOG_FLUSH_SECONDS=str(flush), QALBY_SHUTDOWN_GRACE_SECONDS="5", **db.env) as server:
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                                     timeout=30) as client:
            config = {"uid": "emu", "provider": "openai", "api_key": emulator.keys["openai"],
                      "base_url": emulator.base_urls["openai"]}
            assert (await client.post("/providers/config", json=config)).status_code == 201
            body = {"provider_uid": "emu", "model": "m", "messages": [{"role": "user", "content": "hi"}]}
            responses = await asyncio.gather(*(client.post("/agent/run", json=body) for _ in range(5)))
            assert [r.status_code for r in responses] == [200] * 5
        ids = [r.headers["X-Request-ID"] for r in responses]
        with request_logs_locked(db):
            started = time.monotonic()
            # Server.stop kills the process after 30 s: an unbounded flush fails here, not hangs.
            code = await asyncio.to_thread(server.stop, signal.SIGTERM)
            took = time.monotonic() - started
            output = server.output  # before the block's own stop() appends it again
    assert code == 0, output
    # What the chart gives a pod after its drain (terminationGracePeriodSeconds: drain + flush + 10):
    # killed sooner, it would lose the records without saying so.
    assert took < flush + 10, (took, output)
    assert output.count("request logs not written at shutdown: 6 record(s) lost") == 1, output
    assert db.logged(ids) == []
