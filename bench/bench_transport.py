"""The SDKs' HTTP transports side by side: client CPU per request, httpx's own against ours (aiohttp).

A canned upstream (a raw asyncio server in its own process, cheap enough not to be the limit)
answers every chat completion at once; a client process sends ``--requests`` completions through
``openai.AsyncOpenAI(...).chat.completions.create`` (or groq's SDK), ``--concurrency`` at a time, on
uvloop as production runs, and reports its own CPU time per request, its rate and latency. Each
transport runs in a fresh process, in turn, ``--rounds`` times.

    .venv/bin/python bench/bench_transport.py                    # chat, c=64, 2000 requests, 2 rounds
    .venv/bin/python bench/bench_transport.py --stream --concurrency 500 --requests 1000
    .venv/bin/python bench/bench_transport.py --sdk groq --transports httpx,ours
    .venv/bin/python bench/bench_transport.py --hold 500                  # memory per held stream

Short by design (a few seconds per run): it measures the transport, not the proxy (bench_agent.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = 20  # stream events per streamed answer

COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello " * WORDS}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": WORDS, "total_tokens": WORDS + 5},
}).encode()


def _event(delta: dict, finish: str | None = None) -> bytes:
    chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


JSON_ANSWER = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
               % len(COMPLETION)) + COMPLETION
STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
STREAM_EVENTS = ([_event({"role": "assistant", "content": ""})] + [_event({"content": "hello "})] * WORDS
                 + [_event({}, "stop"), b"data: [DONE]\n\n"])


# ---- the upstream ---------------------------------------------------------------------------------


class Upstream(asyncio.Protocol):
    """HTTP/1.1 keep-alive, canned answers; a JSON body with "stream": true gets an event stream,
    one event per write, as a provider sends them."""

    def connection_made(self, transport) -> None:
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body, self.buffer = self.buffer[end + 4:end + 4 + length], self.buffer[end + 4 + length:]
            if b'"model": "hold"' in body:  # the first event, then nothing until the client leaves
                self.transport.write(STREAM_HEAD + _chunked(STREAM_EVENTS[0]))
            elif b'"stream": true' in body or b'"stream":true' in body:
                asyncio.get_running_loop().create_task(self._stream())
            else:
                self.transport.write(JSON_ANSWER)

    async def _stream(self) -> None:
        self.transport.write(STREAM_HEAD)
        for event in STREAM_EVENTS:
            self.transport.write(_chunked(event))
            await asyncio.sleep(0)  # one event per write
        self.transport.write(b"0\r\n\r\n")


def serve(port: int) -> None:
    import uvloop

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Upstream, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


# ---- the client -----------------------------------------------------------------------------------


def sdk_client(sdk: str, name: str, base_url: str):
    """``sdk``'s async client on the transport ``name``: httpx (the SDK's default), ours, vendored."""
    import groq
    import openai

    from providers.adapters import transport

    module = openai if sdk == "openai" else groq
    if name == "httpx":
        http_client = module.DefaultAsyncHttpxClient()
    elif name == "ours":
        http_client = transport.client(module.DefaultAsyncHttpxClient)
    elif name == "vendored":  # the SDK's own aiohttp client (openai only)
        http_client = module.DefaultAioHttpClient()
    else:
        raise SystemExit(f"unknown transport {name}")
    cls = openai.AsyncOpenAI if sdk == "openai" else groq.AsyncGroq
    return cls(api_key="sk-bench", base_url=base_url, max_retries=0, timeout=60, http_client=http_client)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def hold(client, count: int) -> dict:
    """Memory per stream held open after its first event (the upstream sends nothing more)."""
    messages = [{"role": "user", "content": "hello there"}]
    warm = await client.chat.completions.create(model="hold", messages=messages, stream=True)
    await anext(aiter(warm))
    await warm.close()
    before = rss_kib()

    async def open_one():
        stream = await client.chat.completions.create(model="hold", messages=messages, stream=True)
        await anext(aiter(stream))
        return stream

    streams = await asyncio.gather(*(open_one() for _ in range(count)))
    held = rss_kib() - before
    await asyncio.gather(*(stream.close() for stream in streams))
    return {"held": len(streams), "kib_per_stream": held / count}


async def run_client(args) -> dict:
    base = f"http://127.0.0.1:{args.port}" + ("/v1" if args.sdk == "openai" else "")
    client = sdk_client(args.sdk, args.transport, base)
    if args.hold:
        return {"transport": args.transport, **await hold(client, args.hold)}
    messages = [{"role": "user", "content": "hello there"}]
    latencies: list[float] = []

    async def one() -> None:
        started = time.perf_counter()
        if args.stream:
            stream = await client.chat.completions.create(model="bench", messages=messages, stream=True)
            async for _ in stream:
                pass
        else:
            await client.chat.completions.create(model="bench", messages=messages)
        latencies.append(time.perf_counter() - started)

    async def worker(count: int) -> None:
        for _ in range(count):
            await one()

    await asyncio.gather(*(one() for _ in range(min(args.concurrency, 64))))  # warm-up: connections, imports
    latencies.clear()
    share, extra = divmod(args.requests, args.concurrency)
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(share + (i < extra)) for i in range(args.concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    latencies.sort()
    return {"transport": args.transport, "requests": len(latencies), "seconds": wall, "rate": len(latencies) / wall,
            "cpu_us": cpu / len(latencies) * 1e6, "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000}


def client_main(args) -> None:
    import uvloop

    print(json.dumps(uvloop.run(run_client(args))))


# ---- the driver -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinned(cpu: int | None) -> dict:
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return {}
    return {"preexec_fn": lambda: os.sched_setaffinity(0, {cpu})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--stream", action="store_true", help=f"streamed completions ({WORDS} content events)")
    parser.add_argument("--sdk", choices=["openai", "groq"], default="openai")
    parser.add_argument("--transports", default="httpx,ours", help="comma-separated: httpx, ours, vendored")
    parser.add_argument("--hold", type=int, default=0, help="instead: memory per stream, N streams held open")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pin", action="store_true", help="upstream on CPU 0, client on CPU 1")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--transport", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    if args.client:
        return client_main(args)

    port = free_port()
    upstream = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], **pinned(0 if args.pin else None))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or upstream.poll() is not None:
                    raise SystemExit("the upstream did not start") from None
                time.sleep(0.05)
        if args.hold:
            print(f"{args.sdk}: {args.hold} streams held open after their first event, uvloop")
        else:
            kind = "stream" if args.stream else "chat"
            print(f"{args.sdk} {kind}, {args.requests} requests at concurrency {args.concurrency}, uvloop")
            print(f"{'transport':10s} {'client CPU/req':>15s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s}")
        for _ in range(args.rounds):
            for name in args.transports.split(","):
                command = [sys.executable, __file__, "--client", "--port", str(port), "--transport", name,
                           "--sdk", args.sdk, "--requests", str(args.requests), "--concurrency", str(args.concurrency),
                           "--hold", str(args.hold)]
                out = subprocess.run(command + (["--stream"] if args.stream else []), capture_output=True, text=True,
                                     check=True, timeout=300, **pinned(1 if args.pin else None))
                r = json.loads(out.stdout.strip().splitlines()[-1])
                if args.hold:
                    print(f"{name:10s} {r['kib_per_stream']:.0f} KiB per held stream ({r['held']} held)")
                    continue
                print(f"{name:10s} {r['cpu_us']:12.0f} µs {r['rate']:8.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f}")
    finally:
        upstream.terminate()
        upstream.wait(5)


if __name__ == "__main__":
    main()
