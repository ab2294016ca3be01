"""A tiny HTTP/1.1 server on loopback, in the test's own event loop, for the faults the emulator does
not make (a clean close before any answer, bad chunk framing, a full accept queue...).

The first segment of the request path chooses what it does: ``/<mode>/anything``. It counts the
connections it accepted and keeps every request line as it arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import struct

SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
EVENT = b"data: {}\n\n"
CHUNK = b"%x\r\n%s\r\n" % (len(EVENT), EVENT)
COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "unzipped"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def _reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP reset (RST), not a clean close."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _answer(mode: str, writer: asyncio.StreamWriter) -> bool:
    """Act out ``mode``; False when the connection is finished with."""
    if mode == "ok":
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
    elif mode == "stream":  # a whole chunked body
        writer.write(SSE_HEAD + CHUNK * 3 + b"0\r\n\r\n")
    elif mode == "long":  # a body that keeps coming, slowly
        writer.write(SSE_HEAD)
        for _ in range(100):
            writer.write(CHUNK)
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
    elif mode == "gzip":
        body = gzip.compress(json.dumps(COMPLETION).encode())
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))
    elif mode == "reset":
        _reset(writer)
        return False
    elif mode == "close":
        writer.close()
        return False
    elif mode in ("reset_mid_chunked", "close_mid_chunked", "reset_mid_length", "close_mid_length"):
        length = mode.endswith("length")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789" if length else SSE_HEAD + CHUNK)
        await writer.drain()
        await asyncio.sleep(0.05)
        _reset(writer) if mode.startswith("reset") else writer.close()
        return False
    elif mode == "bad_chunk":  # a malformed chunk size, after a good first chunk
        writer.write(SSE_HEAD + CHUNK)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"zz\r\nxx\r\n")
    elif mode == "bad_status":
        writer.write(b"HTTP/1.1 abc OK\r\n\r\n")
    elif mode == "slow_headers":
        await asyncio.sleep(30)
    elif mode == "slow_body":
        writer.write(SSE_HEAD + CHUNK)
        await writer.drain()
        await asyncio.sleep(30)
    else:
        writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
    await writer.drain()
    return mode in ("ok", "stream", "long", "gzip")


class Upstream:
    def __init__(self) -> None:
        self.request_lines: list[bytes] = []
        self.accepted = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}"

    async def start(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._tasks.add(asyncio.current_task())
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *headers = head.split(b"\r\n")
                self.request_lines.append(line)
                fields = dict(h.lower().split(b": ", 1) for h in headers if b": " in h)
                if b"content-length" in fields:
                    await reader.readexactly(int(fields[b"content-length"]))
                if not await _answer(line.split(b" ")[1].split(b"/")[1].decode(), writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(asyncio.current_task())
            self._writers.discard(writer)
            writer.transport.abort()


def refused_url() -> str:
    """A loopback address where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/x"


@contextlib.contextmanager
def unaccepting():
    """A URL whose listener never accepts and whose queue is full: a connect to it hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(address)
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{address[1]}/x"
    finally:
        for sock in [listener, *fillers]:
            sock.close()
