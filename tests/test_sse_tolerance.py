"""The undecodable-event filter every SDK client of the adapters carries (providers/adapters/sse.py), fed
the way a network feeds it: events split across reads at any byte, both blank-line framings."""

from dataclasses import dataclass

import httpx
import httpx2
import pytest

from providers.adapters import sse


@dataclass
class Attempt:
    provider_uid: str = "p"
    model: str = "m"
    skipped_events: int = 0


def body(separator: bytes, *events: bytes) -> bytes:
    return b"".join(event + separator for event in events)


async def read(library, payload: bytes, piece: int, content_type: str = "text/event-stream") -> bytes:
    async def pieces():
        for start in range(0, len(payload), piece):
            yield payload[start:start + piece]

    def answer(request):
        return library.Response(200, headers={"content-type": content_type}, content=pieces())

    async with library.AsyncClient(transport=library.MockTransport(answer), event_hooks=sse.event_hooks()) as client:
        async with client.stream("GET", "http://upstream.invalid/") as response:
            return b"".join([chunk async for chunk in response.aiter_bytes()])


GOOD = [b'event: delta\ndata: {"a": 1}', b'data: {"b": 2}', b"data: [DONE]"]
BAD = b'data: {"c": '


@pytest.mark.parametrize("library", [httpx, httpx2])
@pytest.mark.parametrize("separator", [b"\n\n", b"\r\n\r\n"])
@pytest.mark.parametrize("piece", [1, 7, 4096])
async def test_one_undecodable_event_is_dropped_and_everything_else_passes_byte_for_byte(library, separator, piece):
    attempt = Attempt()
    sse.attempt.set(attempt)
    sent = body(separator, GOOD[0], BAD, GOOD[1], GOOD[2])
    assert await read(library, sent, piece) == body(separator, *GOOD)
    assert attempt.skipped_events == 1


@pytest.mark.parametrize("separator", [b"\n\n", b"\r\n\r\n"])
async def test_the_second_one_is_passed_on_for_the_sdk_to_fail_on(separator):
    attempt = Attempt()
    sse.attempt.set(attempt)
    sent = body(separator, BAD, GOOD[0], BAD, GOOD[1])
    assert await read(httpx, sent, 5) == body(separator, GOOD[0], BAD, GOOD[1])
    assert attempt.skipped_events == 1


async def test_nothing_is_touched_outside_an_attempt_or_outside_event_streams():
    sse.attempt.set(None)
    sent = body(b"\n\n", BAD, GOOD[1])
    assert await read(httpx, sent, 3) == sent
    attempt = Attempt()
    sse.attempt.set(attempt)
    assert await read(httpx2, sent, 3, content_type="application/json") == sent
    assert attempt.skipped_events == 0
