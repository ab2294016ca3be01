"""Small helpers for agent tests: request bodies and NDJSON parsing."""

import json


def single(provider: str, model: str = "m1", text: str = "hello there", **extra) -> dict:
    return {"provider_uid": provider, "model": model, "messages": [{"role": "user", "content": text}], **extra}


def chain(*requests: dict, strategy: str = "sequential", **extra) -> dict:
    return {"requests": list(requests), "strategy": strategy, **extra}


async def stream(client, body: dict, path: str = "/agent/run_stream"):
    """(status, parsed lines or the JSON error body, response headers)."""
    async with client.stream("POST", path, json=body) as response:
        raw = await response.aread()
    if response.headers.get("content-type", "").startswith("application/x-ndjson"):
        return response.status_code, [json.loads(line) for line in raw.decode().splitlines()], response.headers
    return response.status_code, json.loads(raw), response.headers


def text_of(lines: list[dict]) -> str:
    return "".join(line["text"] for line in lines if line["type"] == "delta")


def statuses(attempts: list[dict]) -> list[str]:
    return [a["status"] for a in attempts]


async def eventually(predicate, within: float = 10.0) -> bool:
    """Poll an outside state (the emulator's record) until it holds or the timeout passes."""
    import asyncio
    import time

    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
