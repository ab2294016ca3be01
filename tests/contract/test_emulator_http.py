"""``python -m tests.emulator`` as a stand-alone server (uvloop + httptools, unlike the test fixture)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def standalone():
    """A server of this test's own: one test reads its announced lines, another stops it."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.emulator", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"emulator did not start: {process.stdout.read()}") from None
                time.sleep(0.05)
        yield process, port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def announced(process) -> dict[str, tuple[str, str]]:
    """``provider -> (base_url, api_key)`` from the lines the server prints before serving."""
    found = {}
    while "openai" not in found or "groq" not in found:
        line = process.stdout.readline()
        assert line, "the emulator closed its output before printing the base URLs"
        name, *fields = line.split()
        values = dict(f.split("=", 1) for f in fields if "=" in f)
        if "base_url" in values:
            found[name] = (values["base_url"], values.get("api_key", ""))
    return found


async def test_standalone_server_serves_the_sdk_and_the_record_api(standalone):
    process, port = standalone
    urls = announced(process)
    root = f"http://127.0.0.1:{port}"
    assert urls["openai"] == (f"{root}/openai/v1", "sk-emu-openai-0123456789")
    assert urls["groq"] == (f"{root}/groq", "gsk_emu_0123456789")

    base_url, key = urls["openai"]
    async with openai.AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=5) as client:
        reply = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "ping"}]
        )
        assert (
            reply.choices[0].message.content
            == "ping [model=gpt-4o system=- images=0 temperature=- max_tokens=-]"
        )
        # the connection reset works on uvloop's transport too
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(
                model="gpt-4o~reset", messages=[{"role": "user", "content": "x"}]
            )

    async with httpx.AsyncClient(base_url=root) as raw:
        record = (await raw.get("/_emulator/requests", params={"provider": "openai"})).json()
        assert [r["path"] for r in record] == ["/openai/v1/chat/completions"] * 2
        assert record[0]["headers"]["authorization"] == "[redacted]"
        assert '"content":"ping"' in record[0]["body"] and record[0]["method"] == "POST"
        assert (await raw.get("/_emulator/requests", params={"provider": "groq"})).json() == []
        assert (await raw.post("/_emulator/reset")).json() == {"ok": True}
        assert (await raw.get("/_emulator/requests")).json() == []


def test_standalone_server_stops_on_sigterm(standalone):
    process, port = standalone
    process.terminate()
    process.wait(10)  # uvicorn shuts down gracefully, then re-raises the signal as its exit status
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
