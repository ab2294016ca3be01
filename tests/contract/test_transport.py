"""The adapters' SDK clients on the aiohttp transport (providers/adapters/transport.py), through the
real SDKs: a connection that fails is reported as one, never as a timeout; no connection cap holds
requests back; a request or stream the engine gives up on leaves no connection open."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time

import pytest

from providers import exceptions as exc
from providers import registry
from providers.adapters.audio import SpeechRequest
from providers.adapters.chat import ChatRequest, Message
from providers.adapters.options import ConfigSnapshot
from tests.audio.helpers import RACHEL
from tests.contract.upstream import Upstream, refused_url

MODELS = {"openai": "gpt-4o", "anthropic": "claude-x", "groq": "llama-3.3-70b-versatile",
          "elevenlabs": "eleven_multilingual_v2"}
CHAT = ["openai", "anthropic", "groq"]


def adapter(kind: str, base_url: str, key: str = ""):
    prefix = registry.KINDS[kind].key_prefixes[0]
    config = ConfigSnapshot(uid=kind, provider=kind, api_key=key or f"{prefix}test-0123456789", base_url=base_url,
                            options={}, enabled=True, version="1")
    return registry.module(kind).Adapter(config)


def emulated(kind: str, emulator):
    return adapter(kind, emulator.base_urls[kind], emulator.keys[kind])


def ask(model: str, text: str = "hello there") -> ChatRequest:
    return ChatRequest(model=model, messages=(Message("user", text),))


async def attempt(kind: str, target) -> BaseException:
    """The error of one call through ``target`` (an adapter), as the SDK raised it."""
    if kind == "elevenlabs":
        call = target.speak(SpeechRequest(model=MODELS[kind], text="hello", voice=RACHEL))
    else:
        call = target.chat(ask(MODELS[kind]))
    with pytest.raises(Exception) as raised:
        await call
    return raised.value


@pytest.fixture
async def upstream():
    server = await Upstream().start()
    yield server
    await server.stop()


# ---- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [*CHAT, "elevenlabs"])
async def test_a_refused_connection_is_a_connection_failure_not_a_timeout(kind):
    target = adapter(kind, refused_url())
    reported = target.map_error(await attempt(kind, target), MODELS[kind])
    assert isinstance(reported, exc.Unavailable) and "ConnectError" in str(reported)


@pytest.mark.parametrize("kind", [*CHAT, "elevenlabs"])
@pytest.mark.parametrize(("mode", "cause"), [("close", "RemoteProtocolError"), ("reset", "ReadError")])
async def test_a_server_that_drops_the_connection_unanswered_is_a_connection_failure_not_a_timeout(
    upstream, kind, mode, cause
):
    target = adapter(kind, upstream.url(mode))
    error = await attempt(kind, target)
    assert "Timeout" not in type(error).__name__
    reported = target.map_error(error, MODELS[kind])
    assert isinstance(reported, exc.Unavailable) and f"({cause})" in str(reported)


async def test_a_compressed_answer_reaches_the_sdk_decoded(upstream):
    result = await adapter("openai", upstream.url("gzip")).chat(ask("gpt-4o"))
    assert result.text == "unzipped"


# ---- no connection cap ----------------------------------------------------------------------------

CONCURRENT = 250
SLOW = 1.5  # seconds each answer waits: long enough for every request to arrive first


@pytest.mark.parametrize("kind", CHAT)
async def test_concurrent_requests_to_one_upstream_are_all_in_flight_at_once(emulator, kind):
    target, model = emulated(kind, emulator), f"{MODELS[kind]}~slow{SLOW}"
    results = await asyncio.gather(*(target.chat(ask(model, f"request {i}")) for i in range(CONCURRENT)))
    assert len(results) == CONCURRENT
    arrivals = sorted(request.at for request in emulator.recorded(kind))
    assert len(arrivals) == CONCURRENT
    # A cap of N connections would hold request N+1 until the first answer, SLOW seconds later.
    assert arrivals[-1] - arrivals[0] < SLOW


# ---- what the engine gives up on closes its connection -----------------------------------------


@contextlib.contextmanager
def no_collector():
    """A connection must be closed by the transport, not by the garbage collector finding it later."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def until(condition, within: float) -> bool:
    """Whether ``condition()`` holds within ``within`` seconds (the emulator runs in another thread)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return False


async def hung_up(emulator, kind: str) -> bool:
    """Whether the emulator saw every request of ``kind`` hung up on, within 2 s."""
    def every() -> bool:
        records = emulator.recorded(kind)
        return bool(records) and all(r.disconnected_at is not None for r in records)

    return await until(every, 2.0)


@pytest.mark.parametrize("kind", CHAT)
async def test_a_request_cancelled_before_its_answer_closes_its_connection(emulator, kind):
    target = emulated(kind, emulator)
    with no_collector():
        task = asyncio.create_task(target.chat(ask(f"{MODELS[kind]}~hang")))
        assert await until(lambda: emulator.recorded(kind), 5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await hung_up(emulator, kind)


@pytest.mark.parametrize("kind", CHAT)
async def test_a_stream_closed_midway_closes_its_connection(emulator, kind):
    target = emulated(kind, emulator)
    with no_collector():
        chunks = target.chat_stream(ask(f"{MODELS[kind]}~long200~gap50"))
        await anext(chunks)
        await chunks.aclose()
        assert await hung_up(emulator, kind)


@pytest.mark.parametrize("kind", CHAT)
async def test_a_stream_whose_reader_is_cancelled_closes_its_connection(emulator, kind):
    target = emulated(kind, emulator)
    first = asyncio.Event()

    async def read() -> None:
        async for _ in target.chat_stream(ask(f"{MODELS[kind]}~long200~gap50")):
            first.set()

    with no_collector():
        task = asyncio.create_task(read())
        await asyncio.wait_for(first.wait(), 5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await hung_up(emulator, kind)


@pytest.mark.parametrize("kind", CHAT)
async def test_a_stream_read_to_its_end_is_not_cut(emulator, kind):
    chunks = [chunk async for chunk in emulated(kind, emulator).chat_stream(ask(f"{MODELS[kind]}~long30"))]
    assert chunks and emulator.recorded(kind)[0].disconnected_at is None
