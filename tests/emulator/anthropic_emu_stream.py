"""Anthropic's SSE stream, cut from a complete Message, in the real event order and shapes.

``message_start`` -> per block ``content_block_start`` / ``content_block_delta``... /
``content_block_stop`` (a ``ping`` after the first block start, as recorded) -> ``message_delta``;
the caller appends ``message_stop``. Every event carries its ``event:`` line: the SDK drops events
without one. Tool inputs stream as ``input_json_delta`` (first fragment ``""``); a
``web_search_tool_result`` arrives whole in its ``content_block_start``; a cited text block starts
with ``"citations": []`` and gets one ``citations_delta`` per citation before its text. A
``thinking`` block starts empty, streams ``thinking_delta`` pieces, then its ``signature_delta``.
"""

from __future__ import annotations

import json
from typing import Any

from tests.emulator.core import split_tokens

JSON_PIECE = 12  # characters per input_json_delta fragment


def encode(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def malformed(event: bytes) -> bytes:
    """The same event with its JSON cut short, so the client's JSON parse fails."""
    head, _, data = event.partition(b"\ndata: ")
    return head + b"\ndata: " + data.rstrip()[: max(len(data.rstrip()) // 2, 1)] + b"\n\n"


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return encode({"type": "content_block_delta", "index": index, "delta": delta})


def _block_events(index: int, block: dict[str, Any]) -> list[bytes]:
    kind = block["type"]
    events: list[bytes] = []
    if kind == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        if block.get("citations"):
            start = {"citations": [], **start}
        events.append(encode({"type": "content_block_start", "index": index, "content_block": start}))
        for citation in block.get("citations") or []:
            events.append(_delta(index, {"type": "citations_delta", "citation": citation}))
        for piece in split_tokens(block["text"]) if block["text"] else []:
            events.append(_delta(index, {"type": "text_delta", "text": piece}))
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        events.append(encode({"type": "content_block_start", "index": index, "content_block": start}))
        for piece in split_tokens(block["thinking"]):
            events.append(_delta(index, {"type": "thinking_delta", "thinking": piece}))
        events.append(_delta(index, {"type": "signature_delta", "signature": block["signature"]}))
    elif kind in ("tool_use", "server_tool_use"):
        start = {**block, "input": {}}
        events.append(encode({"type": "content_block_start", "index": index, "content_block": start}))
        raw = json.dumps(block["input"]) if block["input"] else ""
        pieces = [""] + [raw[i : i + JSON_PIECE] for i in range(0, len(raw), JSON_PIECE)]
        for piece in pieces:
            events.append(_delta(index, {"type": "input_json_delta", "partial_json": piece}))
    else:
        events.append(encode({"type": "content_block_start", "index": index, "content_block": block}))
    events.append(encode({"type": "content_block_stop", "index": index}))
    return events


def message_events(message: dict[str, Any]) -> list[bytes]:
    """Every event of the stream of ``message`` except the final ``message_stop``."""
    usage = message["usage"]
    start_usage = {
        "input_tokens": usage["input_tokens"],
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": usage["cache_creation"],
        "output_tokens": 1,
        "service_tier": usage["service_tier"],
    }
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
    events = [encode({"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        block_events = _block_events(index, block)
        if index == 0:
            block_events.insert(1, b'event: ping\ndata: {"type": "ping"}\n\n')
        events.extend(block_events)
    final_usage = {
        "input_tokens": usage["input_tokens"],
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": usage["output_tokens"],
    }
    if "server_tool_use" in usage:
        final_usage["server_tool_use"] = usage["server_tool_use"]
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    events.append(encode({"type": "message_delta", "delta": delta, "usage": final_usage}))
    return events
