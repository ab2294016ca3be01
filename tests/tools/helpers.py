"""Request bodies for tool tests (the agent tests' helpers parse answers and streams)."""

import json

from tests.emulator.mcp_emu import protected_url


def calls(*steps: tuple[str, dict]) -> str:
    """The emulator model's directives: it calls these tools, one per turn, then answers."""
    return "; ".join(f"CALL {name} {json.dumps(arguments)}" for name, arguments in steps)


def mcp(emulator, *, protected: bool = False, **fields) -> dict:
    url = emulator.base_urls["mcp"]
    return {"kind": "mcp_streamable", "url": protected_url(url) if protected else url, **fields}


def ask(provider: str, text: str, *tools: dict, model: str = "m1", **extra) -> dict:
    return {"provider_uid": provider, "model": model, "messages": [{"role": "user", "content": text}],
            "tools": list(tools), **extra}


def lines_of(lines: list[dict], *types: str) -> list[dict]:
    return [line for line in lines if line["type"] in types]
