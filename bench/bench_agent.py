"""Benchmark: what the proxy adds to a chat request, and what 500 open streams cost.

Starts the emulator and the proxy (its production server) on loopback, sends the same chat
request directly to the emulator's OpenAI endpoint and through ``/agent/run`` (and streamed,
through ``/agent/run_stream``), at several concurrency levels, and prints a Markdown table.
Every loop is bounded in count and time; nothing leaves 127.0.0.1.

    .venv/bin/python bench/bench_agent.py [--requests 400] [--concurrency 1,8,64] [--streams 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Stack, rss_mib

BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say something short about benchmarks."}]}


async def timed(send, count: int, concurrency: int) -> list[float]:
    """Latencies (seconds) of ``count`` calls of ``send``, at most ``concurrency`` in flight."""
    latencies: list[float] = []
    queue = iter(range(count))

    async def worker():
        for _ in queue:
            started = time.perf_counter()
            await send()
            latencies.append(time.perf_counter() - started)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout=600)
    return latencies


def summary(latencies: list[float], wall: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50": statistics.median(ordered) * 1000,
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "rps": len(ordered) / wall,
    }


async def measure(client: httpx.AsyncClient, method, count: int, concurrency: int) -> dict[str, float]:
    await timed(method, min(50, count), concurrency)  # warm pools and caches
    started = time.perf_counter()
    latencies = await timed(method, count, concurrency)
    return summary(latencies, time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--compare-logging", action="store_true",
                        help="instead: the same proxied requests with request logs on and off, in one run")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    if args.compare_logging:
        await compare_logging(args.requests, levels)
        return

    with Stack() as stack:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            emu_headers = {"Authorization": f"Bearer {stack.emulator_key('openai')}"}
            direct_url = stack.emulator_url("openai") + "/chat/completions"
            proxy = {"Authorization": f"Bearer {stack.client_key}"}
            via = {"provider_uid": "bench-openai", **BODY}

            async def direct():
                (await client.post(direct_url, json=BODY, headers=emu_headers)).raise_for_status()

            async def direct_stream():
                body = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
                async with client.stream("POST", direct_url, json=body, headers=emu_headers) as r:
                    r.raise_for_status()
                    async for _ in r.aiter_bytes():
                        pass

            async def proxied():
                (await client.post(f"{stack.proxy_url}/agent/run", json=via, headers=proxy)).raise_for_status()

            async def proxied_stream():
                async with client.stream("POST", f"{stack.proxy_url}/agent/run_stream", json=via, headers=proxy) as r:
                    r.raise_for_status()
                    async for _ in r.aiter_bytes():
                        pass

            rows = []
            for label, pair in [("non-streaming", (direct, proxied)), ("streaming", (direct_stream, proxied_stream))]:
                for level in levels:
                    d = await measure(client, pair[0], args.requests, level)
                    p = await measure(client, pair[1], args.requests, level)
                    rows.append((label, level, d, p))

            print(f"\nMachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; {args.requests} requests per cell\n")
            print("| mode | concurrency | direct p50 / p99 ms | proxy p50 / p99 ms | added p50 / p99 ms | direct rps | proxy rps |")
            print("|---|---|---|---|---|---|---|")
            for label, level, d, p in rows:
                print(
                    f"| {label} | {level} | {d['p50']:.1f} / {d['p99']:.1f} | {p['p50']:.1f} / {p['p99']:.1f} "
                    f"| {p['p50'] - d['p50']:.1f} / {p['p99'] - d['p99']:.1f} | {d['rps']:.0f} | {p['rps']:.0f} |"
                )

            if args.streams:
                await open_streams(client, stack, args.streams)


async def compare_logging(count: int, levels: list[int]) -> None:
    """Request logs are written off the request path: the proxy's latency with them on and off."""
    results = {}
    for label, flag in [("logs off", "0"), ("logs on", "1"), ("logs off again", "0"), ("logs on again", "1")]:
        with Stack(QALBY_REQUEST_LOGS=flag) as stack:
            async with httpx.AsyncClient(timeout=60) as client:
                headers = {"Authorization": f"Bearer {stack.client_key}"}
                via = {"provider_uid": "bench-openai", **BODY}

                async def proxied(client=client, stack=stack, headers=headers, via=via):
                    r = await client.post(f"{stack.proxy_url}/agent/run", json=via, headers=headers)
                    r.raise_for_status()

                results[label] = {level: await measure(client, proxied, count, level) for level in levels}
    print(f"\nRequest logs on vs off, /agent/run, {count} requests per cell (two rounds each, alternating)\n")
    print("| logs | " + " | ".join(f"c={lv} p50 / p99 ms | c={lv} rps" for lv in levels) + " |")
    print("|---|" + "---|---|" * len(levels))
    for label, cells in results.items():
        print(f"| {label} | " + " | ".join(
            f"{cells[lv]['p50']:.1f} / {cells[lv]['p99']:.1f} | {cells[lv]['rps']:.0f}" for lv in levels) + " |")


async def open_streams(client: httpx.AsyncClient, stack: Stack, count: int) -> None:
    """Hold ``count`` slow streams open at once and read the server's memory."""
    before = rss_mib(stack.proxy_pid)
    body = {"provider_uid": "bench-openai", "model": "bench~long60~gap250", "messages": BODY["messages"]}
    headers = {"Authorization": f"Bearer {stack.client_key}"}
    opened = asyncio.Event()
    started = 0
    peak = before

    async def one():
        nonlocal started
        async with client.stream("POST", f"{stack.proxy_url}/agent/run_stream", json=body, headers=headers) as r:
            lines = r.aiter_lines()
            await anext(lines)
            started += 1
            if started == count:
                opened.set()
            last = ""
            async for line in lines:
                last = line
            assert '"done"' in last, last

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    await asyncio.wait_for(opened.wait(), timeout=120)
    for _ in range(5):
        peak = max(peak, rss_mib(stack.proxy_pid))
        await asyncio.sleep(0.5)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    print(
        f"\n{count} concurrent streams (60 tokens, 250 ms apart): server RSS {before:.0f} MiB idle, "
        f"{peak:.0f} MiB with all open ({(peak - before) * 1024 / count:.0f} KiB per stream); all ended with done."
    )


if __name__ == "__main__":
    asyncio.run(main())
