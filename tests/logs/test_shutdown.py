"""A graceful stop right after a burst loses no request log (the production server, several workers too),
on the suite's kind of database (``server_database``: PostgreSQL when DATABASE_URL names it)."""

import asyncio
import signal
import time

import httpx
import pytest

from tests.processes import Server, manage


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_stopping_the_server_right_after_a_burst_loses_no_log(tmp_path, emulator, workers, server_database):
    db = server_database
    assert manage(tmp_path, "migrate", "--noinput", **db.env).returncode == 0
    token = manage(tmp_path, "create_api_key", "burst", "--scope", "use", "--scope", "manage", **db.env).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    # A batch window longer than the test: only the shutdown flush can write these records.
    with Server(tmp_path, QALBY_LOG_BATCH_SECONDS="30", QALBY_LOG_BATCH_SIZE="1000", QALBY_WORKERS=workers,
                **db.env) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
            config = {"uid": "emu", "provider": "openai", "api_key": emulator.keys["openai"],
                      "base_url": emulator.base_urls["openai"]}
            assert (await client.post("/providers/config", json=config)).status_code == 201
            body = {"provider_uid": "emu", "model": "m~lat50", "messages": [{"role": "user", "content": "hi"}]}
            responses = await asyncio.gather(*(client.post("/agent/run", json=body) for _ in range(40)))
            assert [r.status_code for r in responses] == [200] * 40
        assert server.stop(signal.SIGTERM) == 0, server.output
    ((logs,),) = db.rows("SELECT count(*) FROM providers_requestlog")
    ((attempts,),) = db.rows("SELECT count(*) FROM providers_attempt")
    assert (logs, attempts) == (41, 40), server.output


async def test_stopping_the_server_under_continuous_load_exits_in_time_and_loses_no_log(tmp_path, emulator,
                                                                                         server_database):
    db = server_database
    assert manage(tmp_path, "migrate", "--noinput", **db.env).returncode == 0
    token = manage(tmp_path, "create_api_key", "load", "--scope", "use", "--scope", "manage", **db.env).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    answered: list[str] = []
    grace = 5.0
    with Server(tmp_path, QALBY_SHUTDOWN_GRACE_SECONDS=str(grace), **db.env) as server:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
            config = {"uid": "emu", "provider": "openai", "api_key": emulator.keys["openai"],
                      "base_url": emulator.base_urls["openai"]}
            assert (await client.post("/providers/config", json=config)).status_code == 201
            stopping = asyncio.Event()

            async def keep_sending(path: str, model: str) -> None:
                body = {"provider_uid": "emu", "model": model, "messages": [{"role": "user", "content": "hi"}]}
                while True:  # until the server stops taking requests
                    try:
                        response = await client.post(path, json=body)
                    except httpx.TransportError:
                        if stopping.is_set():
                            return
                        raise
                    assert response.status_code == 200, response.text
                    if path.endswith("_stream"):
                        assert '"type": "done"' in response.text.strip().splitlines()[-1]
                    answered.append(response.headers["X-Request-ID"])

            senders = [asyncio.create_task(keep_sending("/agent/run", "m~lat20")) for _ in range(6)]
            senders += [asyncio.create_task(keep_sending("/agent/run_stream", "m~gap100")) for _ in range(2)]
            await asyncio.sleep(1.5)
            assert answered and not any(task.done() for task in senders)
            stopping.set()
            started = time.monotonic()
            code = await asyncio.to_thread(server.stop, signal.SIGTERM)
            took = time.monotonic() - started
            await asyncio.wait_for(asyncio.gather(*senders), timeout=10)
    assert code == 0, server.output
    assert took < grace + 5, server.output
    logged = {request_id for request_id, in db.rows("SELECT request_id FROM providers_requestlog")}
    assert set(answered) <= logged, (len(set(answered) - logged), server.output)
    assert "Task exception was never retrieved" not in server.output and "Traceback" not in server.output, server.output
