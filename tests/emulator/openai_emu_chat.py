"""``POST /v1/chat/completions`` for OpenAI and every OpenAI-compatible provider (Groq).

What arrives is normalised to a ``core.Prompt``; the answer is ``core.next_action``'s, shaped
like the real API's (wire-formats.md §1, §5).
"""

from __future__ import annotations

import json
import mimetypes
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tests.emulator.core import (
    PREFILL_REFUSAL,
    Emulator,
    Fault,
    Prompt,
    count_tokens,
    next_action,
    paced,
    search_results,
    split_tokens,
    words,
)
from tests.emulator.openai_emu_common import (
    DONE,
    Dialect,
    before_answer,
    data_event,
    midstream,
    new_id,
    read_json,
    sse_response,
    unix_now,
)

IMAGE_TOKENS = 85  # what one low-detail image costs on OpenAI; any fixed number would do
_DATA_URL = re.compile(r"data:([^;,]+)[;,]")
MALFORMED = b'data: {"id":"chatcmpl-broken","choices":[{"delta":{"content":"\n\n'


def data_url_mime(url: str) -> str:
    match = _DATA_URL.match(url)
    if match:
        return match[1]
    return mimetypes.guess_type(url.split("?")[0])[0] or "application/octet-stream"


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
        return str(part.get("text", ""))
    return ""


def content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(t for t in (_part_text(p) for p in content) if t)
    return str(content)


def content_mimes(content: Any) -> list[str]:
    """Mime types of the images, files and audio inside a Chat Completions message content."""
    found = []
    for part in content if isinstance(content, list) else ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            image = part.get("image_url")
            found.append(data_url_mime(image.get("url", "") if isinstance(image, dict) else str(image)))
        elif kind == "file":
            file = part.get("file") or {}
            found.append(data_url_mime(file.get("file_data") or file.get("filename") or ""))
        elif kind == "input_audio":
            found.append("audio/" + str((part.get("input_audio") or {}).get("format", "wav")))
    return found


def parse_chat(body: dict, base_model: str) -> Prompt:
    messages = body.get("messages") or []
    system, texts, mimes, results = [], [], [], []
    last_user = ""
    for message in messages:
        if not isinstance(message, dict):
            continue
        role, content = message.get("role"), message.get("content")
        text = content_text(content)
        texts.append(text)
        for call in message.get("tool_calls") or ():
            texts.append(str((call.get("function") or {}).get("arguments", "")))
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user":
            last_user, results = text, []
            mimes.extend(content_mimes(content))
        elif role in ("tool", "function"):
            results.append(text)
    tools = [t.get("function", {}).get("name") for t in body.get("tools") or () if isinstance(t, dict)]
    tools += [f.get("name") for f in body.get("functions") or () if isinstance(f, dict)]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    return Prompt(
        base_model=base_model,
        last_user_text=last_user,
        system="\n".join(s for s in system if s) or None,
        mimes=tuple(mimes),
        temperature=body.get("temperature"),
        max_tokens=max_tokens,
        tool_names=tuple(n for n in tools if n),
        tool_results=tuple(results),
        web_search=isinstance(body.get("web_search_options"), dict),
        input_text=" ".join(texts),
        prefilled=bool(messages) and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant",
    )


@dataclass
class Turn:
    """The model's decided answer to one request."""

    text: str | None  # None when the turn is a tool call
    call: tuple[str, str, str] | None  # (call id, name, JSON arguments)
    finish: str
    prompt_tokens: int
    completion_tokens: int
    citations: list[dict[str, Any]] = field(default_factory=list)  # url_citation: url, title, start/end
    query: str | None = None  # what the model searched the web for, if it did


def decide(prompt: Prompt, fault: Fault) -> Turn:
    prompt_tokens = count_tokens(prompt.input_text) + IMAGE_TOKENS * len(prompt.mimes)
    kind, value = next_action(prompt)
    if kind == "call":
        name, arguments = value
        args = json.dumps(arguments, separators=(",", ":"))
        # output tokens of a call: its arguments plus a few for the name and framing
        return Turn(None, (new_id("call_"), name, args), "tool_calls", prompt_tokens, count_tokens(args) + 5)
    text = " ".join(words(fault.tokens, prompt.last_user_text)) if fault.tokens is not None else value
    finish = "stop"
    if prompt.max_tokens is not None and count_tokens(text) > prompt.max_tokens:
        # a real model stops mid-answer at max_tokens and says so
        text, finish = "".join(split_tokens(text)[: max(prompt.max_tokens, 0)]).rstrip(), "length"
    citations, query = [], None
    if prompt.web_search and finish == "stop":
        query = prompt.last_user_text
        # the answer quotes each search hit's snippet and cites it
        for hit in search_results(prompt.last_user_text):
            text += " "
            start, text = len(text), text + hit["snippet"]
            citations.append(
                {"url": hit["url"], "title": hit["title"], "start_index": start, "end_index": len(text)}
            )
    return Turn(text, None, finish, prompt_tokens, count_tokens(text), citations, query)


class ChatDialect(Dialect):
    """How a provider shapes a chat completion; OpenAI's by default."""

    system_fingerprint = "fp_emulator01"

    def prompt(self, body: dict, base_model: str) -> Prompt:
        return parse_chat(body, base_model)

    def usage(self, turn: Turn) -> dict[str, Any]:
        return {
            "prompt_tokens": turn.prompt_tokens,
            "completion_tokens": turn.completion_tokens,
            "total_tokens": turn.prompt_tokens + turn.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def envelope(self, cid: str, model: str, obj: str) -> dict[str, Any]:
        return {
            "id": cid,
            "object": obj,
            "created": unix_now(),
            "model": model,
            "service_tier": "default",
            "system_fingerprint": self.system_fingerprint,
        }

    def message(self, turn: Turn) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": turn.text,
            "refusal": None,
            "annotations": [{"type": "url_citation", "url_citation": c} for c in turn.citations],
        }
        if turn.call:
            message["tool_calls"] = [_tool_call(turn.call)]
        return message

    def completion(self, cid: str, model: str, turn: Turn) -> dict[str, Any]:
        choice = {"index": 0, "message": self.message(turn), "logprobs": None, "finish_reason": turn.finish}
        return {
            **self.envelope(cid, model, "chat.completion"),
            "choices": [choice],
            "usage": self.usage(turn),
        }

    def chunk(self, head: dict, delta: dict, finish: str | None = None, **extra: Any) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice], "usage": None, **extra}

    def chunks(self, head: dict, turn: Turn, include_usage: bool) -> list[dict[str, Any]]:
        """The stream's chunks, without [DONE] (wire-formats §1: real chunk order)."""
        out = []
        if turn.call:
            call_id, name, args = turn.call
            first = {
                "index": 0,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            out.append(
                self.chunk(
                    head, {"role": "assistant", "content": None, "tool_calls": [first], "refusal": None}
                )
            )
            for piece in re.findall(r"\w+|\W+", args):
                out.append(self.chunk(head, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
        else:
            out.append(self.chunk(head, {"role": "assistant", "content": "", "refusal": None}))
            out.extend(
                self.chunk(head, {"content": piece}) for piece in split_tokens(turn.text or "") if piece
            )
            if turn.citations:
                cited = [{"type": "url_citation", "url_citation": c} for c in turn.citations]
                out.append(self.chunk(head, {"annotations": cited}))
        out.append(self.chunk(head, {}, turn.finish))
        if include_usage:
            out.append({**head, "choices": [], "usage": self.usage(turn)})
        return out


def _tool_call(call: tuple[str, str, str]) -> dict[str, Any]:
    call_id, name, args = call
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


async def chat_completions(request: Request, emu: Emulator, dialect: ChatDialect) -> Response:
    denied = dialect.check_key(emu, request)
    if denied:
        return denied
    body = await read_json(request, dialect)
    if isinstance(body, Response):
        return body
    stream = bool(body.get("stream"))
    admitted = await dialect.admit(emu, request, body.get("model"), param="messages", stream=stream)
    if isinstance(admitted, Response):
        return admitted
    base, fault = admitted
    prompt = dialect.prompt(body, base)
    if fault.noprefill and prompt.prefilled:
        return dialect.error_response(400, dialect.error(PREFILL_REFUSAL, "invalid_request_error", None, "messages"))
    turn = decide(prompt, fault)
    cid = new_id("chatcmpl-", 29)
    if not stream:
        await before_answer(fault)
        return dialect.json(dialect.completion(cid, base, turn))
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    head = dialect.envelope(cid, base, "chat.completion.chunk")
    events = [data_event(c) for c in dialect.chunks(head, turn, include_usage)]
    fault, events, whole = midstream(
        fault, events, data_event(dialect.stream_error(fault.status or 500, base))
    )
    body_iter = paced(fault, events, malformed=MALFORMED, terminator=[DONE] if whole else [])
    return sse_response(body_iter, dialect)
