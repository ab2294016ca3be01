"""Benchmark: speech time-to-first-byte and transcription upload throughput, direct vs through the proxy.

Starts the emulator and the proxy (its production server) on loopback. Text to speech: the same
streamed speech request to the emulator's OpenAI and ElevenLabs endpoints and through
``/audio/speak_stream``; the time to the first audio byte and to the last. Speech to text: WAV
files of several sizes uploaded to the emulator's OpenAI transcription endpoint, and through
``/audio/transcribe`` (multipart) and ``/audio/transcribe_json`` (base64), with the proxy's peak
resident memory while they run. Every loop is bounded; nothing leaves 127.0.0.1.

    .venv/bin/python bench/bench_audio.py [--requests 200] [--concurrency 1,8] [--sizes 1,10,25] [--uploads 12]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import statistics
import sys
import time
import wave
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Stack, rss_mib

TEXT = "The quick brown fox jumps over the lazy dog, and the proxy streams its voice as it comes."
RACHEL = "21m00Tcm4TlvDq8ikWAM"


def wav_of(megabytes: float) -> bytes:
    frames = int(megabytes * 1_000_000 / 2)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(os.urandom(frames * 2))
    return buffer.getvalue()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def bounded(make, count: int, concurrency: int) -> list:
    """Results of ``count`` calls of ``make``, at most ``concurrency`` in flight."""
    results = []
    queue = iter(range(count))

    async def worker():
        for _ in queue:
            results.append(await make())

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout=600)
    return results


async def first_and_last_byte(client: httpx.AsyncClient, url: str, body: dict, headers: dict) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    async with client.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        async for chunk in response.aiter_bytes():
            if first is None and chunk:
                first = time.perf_counter() - started
    return first, time.perf_counter() - started


async def speech(client: httpx.AsyncClient, stack: Stack, count: int, levels: list[int]) -> None:
    proxy = {"Authorization": f"Bearer {stack.client_key}"}
    cases = {
        "openai tts-1": (
            (stack.emulator_url("openai") + "/audio/speech",
             {"model": "tts-1", "input": TEXT, "voice": "alloy"},
             {"Authorization": f"Bearer {stack.emulator_key('openai')}"}),
            {"provider_uid": "bench-openai", "model": "tts-1", "text": TEXT, "voice": "alloy"},
        ),
        "elevenlabs (voice by name)": (
            (stack.emulator_url("elevenlabs") + f"/v1/text-to-speech/{RACHEL}/stream",
             {"text": TEXT, "model_id": "eleven_multilingual_v2"},
             {"xi-api-key": stack.emulator_key("elevenlabs")}),
            {"provider_uid": "bench-elevenlabs", "model": "eleven_multilingual_v2", "text": TEXT, "voice": "Rachel"},
        ),
    }
    print("\n### Text to speech, streamed: time to first byte (TTFB) and to the last byte\n")
    print("| provider | concurrency | direct TTFB p50 / p99 ms | proxy TTFB p50 / p99 ms | added TTFB p50 ms "
          "| direct last byte p50 ms | proxy last byte p50 ms |")
    print("|---|---|---|---|---|---|---|")
    for label, ((url, direct_body, direct_headers), via) in cases.items():
        def direct(url=url, body=direct_body, headers=direct_headers):
            return first_and_last_byte(client, url, body, headers)

        def proxied(body=via):
            return first_and_last_byte(client, f"{stack.proxy_url}/audio/speak_stream", body, proxy)

        for level in levels:
            await bounded(direct, min(20, count), level)
            await bounded(proxied, min(20, count), level)  # warm: pools, caches, the voice lookup
            d = await bounded(direct, count, level)
            p = await bounded(proxied, count, level)
            d_first, p_first = [f for f, _ in d], [f for f, _ in p]
            print(
                f"| {label} | {level} | {statistics.median(d_first) * 1000:.1f} / {pct(d_first, .99) * 1000:.1f} "
                f"| {statistics.median(p_first) * 1000:.1f} / {pct(p_first, .99) * 1000:.1f} "
                f"| {(statistics.median(p_first) - statistics.median(d_first)) * 1000:.1f} "
                f"| {statistics.median([t for _, t in d]) * 1000:.1f} | {statistics.median([t for _, t in p]) * 1000:.1f} |"
            )


class PeakRss:
    """Samples a process's resident memory every 20 ms while in use."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._task = pid, 0.0, None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mib(self.pid))
            await asyncio.sleep(0.02)

    async def __aenter__(self) -> PeakRss:
        self.peak = rss_mib(self.pid)
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()


async def uploads(client: httpx.AsyncClient, stack: Stack, sizes: list[float], count: int) -> None:
    proxy = {"Authorization": f"Bearer {stack.client_key}"}
    direct_url = stack.emulator_url("openai") + "/audio/transcriptions"
    direct_headers = {"Authorization": f"Bearer {stack.emulator_key('openai')}"}
    print(f"\n### Speech to text: upload throughput ({count} uploads per cell, 2 at a time)\n")
    print("| file | route | p50 ms | MB/s (p50) | proxy peak RSS over idle MiB |")
    print("|---|---|---|---|---|")
    for size in sizes:
        audio = wav_of(size)
        encoded = base64.b64encode(audio).decode()

        async def direct(audio=audio):
            started = time.perf_counter()
            r = await client.post(direct_url, headers=direct_headers, data={"model": "whisper-1"},
                                  files={"file": ("talk.wav", audio, "audio/wav")})
            r.raise_for_status()
            return time.perf_counter() - started

        async def multipart(audio=audio):
            started = time.perf_counter()
            r = await client.post(f"{stack.proxy_url}/audio/transcribe", headers=proxy,
                                  data={"provider_uid": "bench-openai", "model": "whisper-1"},
                                  files={"file": ("talk.wav", audio, "audio/wav")})
            r.raise_for_status()
            return time.perf_counter() - started

        async def base64_json(encoded=encoded):
            started = time.perf_counter()
            body = {"provider_uid": "bench-openai", "model": "whisper-1", "file": ["talk.wav", encoded, "audio/wav"]}
            r = await client.post(f"{stack.proxy_url}/audio/transcribe_json", headers=proxy, json=body)
            r.raise_for_status()
            return time.perf_counter() - started

        for label, send in [("direct (multipart)", direct), ("proxy /audio/transcribe (multipart)", multipart),
                            ("proxy /audio/transcribe_json (base64)", base64_json)]:
            await bounded(send, 2, 2)
            idle = rss_mib(stack.proxy_pid)
            async with PeakRss(stack.proxy_pid) as rss:
                times = await bounded(send, count, 2)
            median = statistics.median(times)
            grew = "-" if label.startswith("direct") else f"{rss.peak - idle:.0f}"
            print(f"| {len(audio) / 1e6:.1f} MB | {label} | {median * 1000:.0f} | {len(audio) / 1e6 / median:.0f} "
                  f"| {grew} |")
        await client.post(f"{stack.emulator_root}/_emulator/reset")  # the record holds every upload


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--sizes", default="1,10,25", help="upload sizes, MB")
    parser.add_argument("--uploads", type=int, default=12)
    args = parser.parse_args()

    with Stack() as stack:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            print(f"\nMachine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
            await speech(client, stack, args.requests, [int(c) for c in args.concurrency.split(",")])
            await uploads(client, stack, [float(s) for s in args.sizes.split(",")], args.uploads)


if __name__ == "__main__":
    asyncio.run(main())
