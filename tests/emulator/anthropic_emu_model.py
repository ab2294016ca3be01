"""Anthropic's side of the emulator: request -> Prompt, and the Message the model answers with.

Streams are cut from that same Message (anthropic_emu_stream), so both forms always agree.

Extended thinking (``thinking.type`` ``enabled`` or ``adaptive``): every answer starts with a
``thinking`` block signed by the emulator. As the real API does, a request whose last assistant
message calls tools must start that message with its thinking block (400 otherwise), and a
thinking block's signature must be one the emulator issued.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import secrets
from typing import Any

from tests.emulator.core import Fault, Prompt, count_tokens, next_action, search_results, split_tokens, words


def new_id(prefix: str) -> str:
    return f"{prefix}_01{secrets.token_hex(11)}"


class BadRequest(Exception):
    pass


SIGNED = b"emulator-thinking:"


def thinks(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _thinking_block(about: str) -> dict[str, Any]:
    signature = base64.b64encode(SIGNED + secrets.token_bytes(24)).decode()
    return {"type": "thinking", "thinking": f"The user asks: {about}. I will answer.", "signature": signature}


def _check_thinking(messages: list[Any]) -> None:
    """With thinking on, the last assistant turn that called tools must come back led by its thinking."""
    turns = [(i, m) for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"]
    if not turns:
        return
    index, last = turns[-1]
    blocks = _blocks(last.get("content"))
    if not any(b.get("type") == "tool_use" for b in blocks):
        return
    if blocks[0].get("type") not in ("thinking", "redacted_thinking"):
        raise BadRequest(
            f"messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
            f"`{blocks[0].get('type')}`. When `thinking` is enabled, a final `assistant` message must start with "
            "a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend "
            "you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. "
            "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
        )
    for number, block in enumerate(blocks):
        if block.get("type") != "thinking":
            continue
        try:
            ours = base64.b64decode(str(block.get("signature", "")), validate=True).startswith(SIGNED)
        except (binascii.Error, ValueError):
            ours = False
        if not ours:
            raise BadRequest(f"messages.{index}.content.{number}: Invalid `signature` in `thinking` block")


# ---- request -> Prompt ------------------------------------------------------------------------


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        return []
    return [block for block in content if isinstance(block, dict)]


def _source_mime(block: dict[str, Any], where: str) -> str:
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "base64":
        try:
            base64.b64decode(source.get("data", ""), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"{where}.source.base64.data: invalid base64 data") from None
        return source.get("media_type") or "application/octet-stream"
    if kind == "text":
        return source.get("media_type") or "text/plain"
    if kind == "url":
        guessed = mimetypes.guess_type(source.get("url", ""))[0]
        return guessed or ("application/pdf" if block.get("type") == "document" else "image/jpeg")
    return "text/plain" if kind == "content" else "application/octet-stream"


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in _blocks(content) if part.get("type") == "text")


def read_prompt(body: dict[str, Any], model: str) -> Prompt:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: at least one message is required")
    system = body.get("system")
    if isinstance(system, list):
        system = "\n".join(b.get("text", "") for b in _blocks(system) if b.get("type") == "text")
    texts: list[str] = [system] if system else []
    mimes: list[str] = []
    last_user_text = ""
    results: list[str] = []
    for m_index, message in enumerate(messages):
        user_texts: list[str] = []
        own_results: list[str] = []
        for b_index, block in enumerate(_blocks(message.get("content"))):
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text", ""))
                user_texts.append(block.get("text", ""))
            elif kind in ("image", "document"):
                mimes.append(_source_mime(block, f"messages.{m_index}.content.{b_index}.{kind}"))
                source = block.get("source") or {}
                if source.get("type") == "text":
                    texts.append(source.get("data", ""))
            elif kind == "tool_result":
                texts.append(_result_text(block))
                own_results.append(_result_text(block))
            elif kind in ("tool_use", "server_tool_use"):
                texts.append(json.dumps(block.get("input", {})))
        if message.get("role") != "user":
            continue
        if user_texts:
            # A user turn with text starts a new exchange: earlier tool results are history.
            last_user_text, results = "\n".join(user_texts), []
        results.extend(own_results)
    if thinks(body):
        _check_thinking(messages)
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    return Prompt(
        base_model=model,
        last_user_text=last_user_text,
        system=system or None,
        mimes=tuple(mimes),
        temperature=body.get("temperature"),
        max_tokens=body.get("max_tokens"),
        tool_names=tuple(t["name"] for t in tools if t.get("type") in (None, "custom") and "name" in t),
        tool_results=tuple(results),
        web_search=any(str(t.get("type", "")).startswith("web_search_") for t in tools),
        input_text="\n".join(texts),
        prefilled=messages[-1].get("role") == "assistant",
    )


# ---- the model's turn -------------------------------------------------------------------------


def _truncate(text: str, limit: int | None, stops: list[str]) -> tuple[str, str, str | None]:
    """Apply stop sequences then max_tokens: (text, stop_reason, stop_sequence)."""
    for stop in stops:
        if stop and stop in text:
            return text[: text.index(stop)], "stop_sequence", stop
    if limit is not None and count_tokens(text) > limit:
        pieces = [p for p in split_tokens(text) if p.strip()][: max(limit, 0)]
        return "".join(pieces).rstrip(), "max_tokens", None
    return text, "end_turn", None


def _search_blocks(query: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The server_tool_use + web_search_tool_result blocks, and the citations for the answer."""
    tool_id = new_id("srvtoolu")
    hits = search_results(query)
    results = [
        {
            "type": "web_search_result",
            "title": hit["title"],
            "url": hit["url"],
            "encrypted_content": base64.b64encode(hit["snippet"].encode()).decode(),
            "page_age": None,
        }
        for hit in hits
    ]
    citations = [
        {
            "type": "web_search_result_location",
            "cited_text": hit["snippet"],
            "url": hit["url"],
            "title": hit["title"],
            "encrypted_index": base64.b64encode(f"{i}:{hit['url']}".encode()).decode(),
        }
        for i, hit in enumerate(hits)
    ]
    blocks = [
        {"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {"query": query}},
        {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": results},
    ]
    return blocks, citations


def build_message(body: dict[str, Any], prompt: Prompt, fault: Fault) -> dict[str, Any]:
    """The complete Message object the model answers with (streams are cut from it)."""
    action, value = next_action(prompt)
    content: list[dict[str, Any]] = []
    searched = False
    stop_sequence = None
    if action == "call":
        name, arguments = value
        content.append({"type": "tool_use", "id": new_id("toolu"), "name": name, "input": arguments})
        stop_reason = "tool_use"
    else:
        text = " ".join(words(fault.tokens, prompt.last_user_text)) if fault.tokens else value
        text, stop_reason, stop_sequence = _truncate(
            text, prompt.max_tokens, body.get("stop_sequences") or []
        )
        block: dict[str, Any] = {"type": "text", "text": text}
        if prompt.web_search:
            searched = True
            search, citations = _search_blocks(prompt.last_user_text)
            content.extend(search)
            block["citations"] = citations
        content.append(block)
    if thinks(body):
        content.insert(0, _thinking_block(prompt.last_user_text))
    output = sum(
        count_tokens(
            b["text"]
            if b["type"] == "text"
            else b["thinking"]
            if b["type"] == "thinking"
            else json.dumps(b["input"])
        )
        for b in content
        if b["type"] in ("text", "tool_use", "thinking")
    )
    usage: dict[str, Any] = {
        "input_tokens": count_tokens(prompt.input_text),
        "output_tokens": output,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "service_tier": "standard",
    }
    if searched:
        usage["server_tool_use"] = {"web_search_requests": 1, "web_fetch_requests": 0}
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": prompt.base_model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }
