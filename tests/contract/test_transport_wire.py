"""The aiohttp transport (providers/adapters/transport.py) at the httpx level: each fault raised as
httpx's own transport raises it, connections kept or closed as they must be, requests sent as httpx
would send them, event loops changing under a transport."""

from __future__ import annotations

import asyncio
import gc
import logging

import httpx
import httpx2
import pytest

from providers.adapters import transport
from tests.contract.upstream import Upstream, refused_url, unaccepting

LIBS = [httpx, httpx2]
TIMEOUT = 0.5


@pytest.fixture
async def upstream():
    server = await Upstream().start()
    yield server
    await server.stop()


def ours(lib, timeout: float = TIMEOUT):
    return transport.client(lib.AsyncClient, timeout=timeout)


def theirs(lib):
    return lib.AsyncClient(timeout=TIMEOUT, trust_env=False)


async def outcome(client, url: str) -> tuple:
    """(status, body) of a POST read whole, or the class of the error it raised."""
    async def read() -> tuple:
        async with client.stream("POST", url, content=b"{}") as response:
            return response.status_code, await response.aread()

    try:
        return await asyncio.wait_for(read(), 5)  # a body left waiting forever fails here
    except Exception as error:  # the class is the outcome
        return (type(error),)


@pytest.mark.parametrize("lib", LIBS, ids=lambda lib: lib.__name__)
@pytest.mark.parametrize("mode", [
    "ok", "stream", "gzip", "reset", "close", "reset_mid_chunked", "close_mid_chunked", "reset_mid_length",
    "close_mid_length", "bad_chunk", "bad_status", "slow_headers", "slow_body", "refused",
])
async def test_each_fault_is_raised_as_httpx_raises_it(upstream, lib, mode):
    url = refused_url() if mode == "refused" else upstream.url(mode)
    async with theirs(lib) as reference, ours(lib) as client:
        expected, got = await outcome(reference, url), await outcome(client, url)
    assert got == expected
    if mode not in ("ok", "stream", "gzip"):
        assert issubclass(got[0], lib.TransportError)


@pytest.mark.parametrize("lib", LIBS, ids=lambda lib: lib.__name__)
async def test_a_connect_that_hangs_is_a_connect_timeout(lib):
    with unaccepting() as url:
        async with theirs(lib) as reference, ours(lib) as client:
            assert await outcome(client, url) == await outcome(reference, url) == (lib.ConnectTimeout,)


@pytest.mark.parametrize("lib", LIBS, ids=lambda lib: lib.__name__)
async def test_a_body_read_to_its_end_leaves_its_connection_for_the_next_request(upstream, lib):
    async with ours(lib) as client:
        for mode in ("ok", "stream", "ok", "gzip"):
            assert (await client.post(upstream.url(mode))).status_code == 200
    assert upstream.accepted == 1


@pytest.mark.parametrize("lib", LIBS, ids=lambda lib: lib.__name__)
async def test_a_body_closed_before_its_end_closes_its_connection(upstream, lib):
    async with ours(lib) as client:
        async with client.stream("POST", upstream.url("long")) as response:
            async for _ in response.aiter_raw():
                break  # the rest of the body is not wanted: the connection cannot serve another request
        assert (await client.post(upstream.url("ok"))).status_code == 200
    assert upstream.accepted == 2


@pytest.mark.parametrize("lib", LIBS, ids=lambda lib: lib.__name__)
async def test_the_request_line_is_the_one_httpx_sends(upstream, lib):
    path = "/ok/v1/models/a%2Fb%20c%3F..%2F/../d?q=%2F%20x&r=1&s=%E2%82%AC"
    async with theirs(lib) as reference, ours(lib) as client:
        await reference.get(upstream.url("") + path[1:])
        await client.get(upstream.url("") + path[1:])
    assert upstream.request_lines[0] == upstream.request_lines[1]


async def test_the_headers_sent_are_the_ones_httpx_sends(emulator):
    import openai

    def sdk(http_client):
        return openai.AsyncOpenAI(api_key=emulator.keys["openai"], base_url=emulator.base_urls["openai"],
                                  max_retries=0, http_client=http_client)

    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    await sdk(openai.DefaultAsyncHttpxClient(trust_env=False)).chat.completions.create(**body)
    await sdk(transport.client(openai.DefaultAsyncHttpxClient)).chat.completions.create(**body)
    reference, sent = emulator.recorded("openai")
    assert sent.headers == reference.headers and sent.body == reference.body


@pytest.mark.parametrize("lib", LIBS, ids=lambda lib: lib.__name__)
async def test_an_upload_of_unknown_length_is_sent_as_it_is_read(emulator, lib):
    parts = [b'{"model": "gpt-4o", ', b'"messages": [{"role": "user", ', b'"content": "streamed"}]}']

    async def body():
        for part in parts:
            yield part

    async with ours(lib, timeout=5) as client:
        response = await client.post(f"{emulator.base_urls['openai']}/chat/completions", content=body(),
                                     headers={"Authorization": f"Bearer {emulator.keys['openai']}"})
    assert response.status_code == 200
    (sent,) = emulator.recorded("openai")
    assert sent.body == b"".join(parts) and sent.headers["transfer-encoding"] == "chunked"


def _unclosed(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Unclosed" in r.getMessage()]


async def test_a_transport_follows_its_event_loop_and_leaves_nothing_unclosed(emulator, caplog):
    client = ours(httpx2, timeout=5)
    url, auth = f"{emulator.base_urls['openai']}/models", {"Authorization": f"Bearer {emulator.keys['openai']}"}

    async def fetch() -> int:
        return (await client.get(url, headers=auth)).status_code

    def in_another_loop() -> int:
        return asyncio.run(fetch())  # a loop of its own, closed once it returns

    caplog.set_level(logging.WARNING)
    assert await asyncio.to_thread(in_another_loop) == 200  # its session is bound to a closed loop now
    assert await fetch() == 200
    assert await asyncio.to_thread(in_another_loop) == 200
    assert await fetch() == 200
    await client.aclose()
    gc.collect()
    await asyncio.sleep(0.05)
    assert _unclosed(caplog) == []


async def test_a_transport_that_is_collected_closes_its_connections(emulator, caplog):
    caplog.set_level(logging.WARNING)
    client = ours(httpx2, timeout=5)
    response = await client.get(f"{emulator.base_urls['openai']}/models",
                                headers={"Authorization": f"Bearer {emulator.keys['openai']}"})
    assert response.status_code == 200  # and its connection waits in the pool
    del client, response  # never closed: an adapter replaced in the cache goes this way
    gc.collect()
    await asyncio.sleep(0.05)
    gc.collect()
    assert _unclosed(caplog) == []


@pytest.mark.parametrize("kind", ["bytes", "file"])
async def test_an_upload_is_sent_as_httpx_sends_it(emulator, kind, tmp_path):
    import openai

    from tests.audio.helpers import wav_file

    audio = wav_file(1.0)
    path = tmp_path / "a.wav"
    path.write_bytes(audio)

    async def send(http_client):
        sdk = openai.AsyncOpenAI(api_key=emulator.keys["openai"], base_url=emulator.base_urls["openai"],
                                 max_retries=0, http_client=http_client)
        with path.open("rb") as opened:
            upload = ("a.wav", audio if kind == "bytes" else opened, "audio/wav")
            await sdk.audio.transcriptions.create(model="whisper-1", file=upload)

    await send(openai.DefaultAsyncHttpxClient(trust_env=False))
    await send(transport.client(openai.DefaultAsyncHttpxClient))
    reference, sent = emulator.recorded("openai")
    boundary = reference.headers["content-type"].split("boundary=")[1]
    assert sent.body.replace(sent.headers["content-type"].split("boundary=")[1].encode(), boundary.encode()) \
        == reference.body
    assert {k: v for k, v in sent.headers.items() if k != "content-type"} == \
        {k: v for k, v in reference.headers.items() if k != "content-type"}
    assert "content-length" in sent.headers and "transfer-encoding" not in sent.headers


@pytest.mark.parametrize("lib", LIBS, ids=lambda lib: lib.__name__)
@pytest.mark.parametrize("mode", ["close", "reset"])
async def test_a_request_that_fails_is_not_retried(upstream, lib, mode):
    async with ours(lib) as client:
        with pytest.raises(lib.TransportError):
            await client.get(upstream.url(mode))  # idempotent: aiohttp on its own would send it again
    assert len(upstream.request_lines) == 1


async def test_closed_connections_are_not_kept(upstream):
    from aiohttp.client_proto import ResponseHandler

    def connections() -> int:
        gc.collect()
        return sum(isinstance(thing, ResponseHandler) for thing in gc.get_objects())

    before = connections()
    async with ours(httpx2) as client:
        for _ in range(30):  # each body closed early: each on a connection of its own, closed after it
            async with client.stream("POST", upstream.url("long")) as response:
                async for _ in response.aiter_raw():
                    break
    assert upstream.accepted == 30
    assert connections() - before < 5


@pytest.mark.parametrize("lib", LIBS, ids=lambda lib: lib.__name__)
@pytest.mark.parametrize("value", ["Bearer sk-pasted\n", "Bearer a\r\nX-Injected: 1", "Bearer \x00"])
async def test_a_header_httpx_would_refuse_is_refused_the_same_way(upstream, lib, value):
    async with theirs(lib) as reference, ours(lib) as client:
        for sender in (reference, client):
            with pytest.raises(lib.LocalProtocolError):
                await sender.post(upstream.url("ok"), headers={"Authorization": value})
    assert upstream.request_lines == []
