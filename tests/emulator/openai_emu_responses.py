"""``POST /v1/responses``: the Responses API, its function tools and built-in web search.

Streams follow the recorded event order of wire-formats.md §2: an ``event:`` line equal to the
JSON ``type``, a growing ``sequence_number``, no ``[DONE]``; the stream ends with
``response.completed`` (the terminator ``nodone`` drops).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tests.emulator.core import PREFILL_REFUSAL, Emulator, Fault, Prompt, paced, search_results, split_tokens
from tests.emulator.openai_emu_chat import Turn, content_text, data_url_mime, decide
from tests.emulator.openai_emu_common import (
    Dialect,
    before_answer,
    named_event,
    new_id,
    read_json,
    sse_response,
    unix_now,
)

WEB_SEARCH_TYPES = {
    "web_search",
    "web_search_2025_08_26",
    "web_search_preview",
    "web_search_preview_2025_03_11",
}
MALFORMED = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":\n\n'


def _item_parts(content: Any) -> tuple[str, list[str]]:
    if not isinstance(content, list):
        return content_text(content), []
    texts, mimes = [], []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            texts.append(str(part.get("text", "")))
        elif kind == "input_image":
            mimes.append(data_url_mime(str(part.get("image_url") or part.get("file_id") or "")))
        elif kind == "input_file":
            mimes.append(
                data_url_mime(
                    str(part.get("file_data") or part.get("filename") or part.get("file_url") or "")
                )
            )
    return " ".join(t for t in texts if t), mimes


def parse_responses(body: dict, base_model: str) -> Prompt:
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    system = (
        [str(body["instructions"])]
        if isinstance(body.get("instructions"), str) and body["instructions"]
        else []
    )
    texts, mimes, results = list(system), [], []
    last_user = ""
    for item in items or ():
        if not isinstance(item, dict):
            continue
        kind, role = item.get("type", "message"), item.get("role")
        if kind == "function_call_output":
            output = item.get("output")
            results.append(output if isinstance(output, str) else _item_parts(output)[0])
            texts.append(results[-1])
        elif kind == "function_call":
            texts.append(str(item.get("arguments", "")))
        elif kind == "message" or role:
            text, found = _item_parts(item.get("content"))
            texts.append(text)
            if role in ("system", "developer"):
                system.append(text)
            elif role == "user":
                last_user, results = text, []
                mimes.extend(found)
    tools = body.get("tools") or []
    return Prompt(
        base_model=base_model,
        last_user_text=last_user,
        system="\n".join(s for s in system if s) or None,
        mimes=tuple(mimes),
        temperature=body.get("temperature"),
        max_tokens=body.get("max_output_tokens"),
        tool_names=tuple(
            t["name"] for t in tools if isinstance(t, dict) and t.get("type") == "function" and t.get("name")
        ),
        tool_results=tuple(results),
        web_search=any(isinstance(t, dict) and t.get("type") in WEB_SEARCH_TYPES for t in tools),
        input_text=" ".join(texts),
        prefilled=bool(items) and isinstance(items[-1], dict) and items[-1].get("role") == "assistant",
    )


def _echo_tools(tools: list) -> list:
    out = []
    for tool in tools:
        if isinstance(tool, dict) and tool.get("type") in WEB_SEARCH_TYPES:
            user_location = {
                "type": "approximate",
                "city": None,
                "country": "US",
                "region": None,
                "timezone": None,
            }
            tool = {"filters": None, "search_context_size": "medium", "user_location": user_location, **tool}
        elif isinstance(tool, dict) and tool.get("type") == "function":
            tool = {"description": None, "strict": True, **tool}
        out.append(tool)
    return out


class Answer:
    """The output items of one response, built once and shown either whole or as stream events."""

    def __init__(self, body: dict, prompt: Prompt, turn: Turn) -> None:
        self.body, self.prompt, self.turn = body, prompt, turn
        self.id = new_id("resp_", 48)
        self.created = unix_now()
        self.search: dict | None = None
        self.message: dict | None = None
        self.call: dict | None = None
        if turn.call:
            call_id, name, args = turn.call
            self.call = {"id": new_id("fc_", 48), "type": "function_call", "status": "completed",
                         "arguments": args, "call_id": call_id, "name": name}  # fmt: skip
            return
        text = turn.text or ""
        annotations = [{"type": "url_citation", **c} for c in turn.citations]
        if prompt.web_search:
            query = prompt.last_user_text
            action: dict[str, Any] = {"type": "search", "query": query, "queries": [query]}
            if "web_search_call.action.sources" in (body.get("include") or ()):
                action["sources"] = [{"type": "url", "url": h["url"]} for h in search_results(query)]
            self.search = {
                "id": new_id("ws_", 48),
                "type": "web_search_call",
                "status": "completed",
                "action": action,
            }
        self.text, self.annotations = text, annotations
        self.incomplete = turn.finish == "length"
        self.message = {
            "id": new_id("msg_", 48),
            "type": "message",
            "status": "incomplete" if self.incomplete else "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "annotations": annotations, "logprobs": [], "text": text}],
        }

    def output(self) -> list[dict]:
        return [item for item in (self.call, self.search, self.message) if item]

    def usage(self) -> dict:
        output_tokens = self.turn.completion_tokens
        return {
            "input_tokens": self.turn.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.turn.prompt_tokens + output_tokens,
        }

    def response(
        self, model: str, *, final: bool, status: str | None = None, error: dict | None = None
    ) -> dict:
        body = self.body
        incomplete = final and self.message is not None and self.incomplete
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status or ("incomplete" if incomplete else "completed" if final else "in_progress"),
            "background": False,
            "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "metadata": body.get("metadata") or {},
            "model": model,
            "output": self.output() if final else [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": _echo_tools(body.get("tools") or []),
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": self.usage() if final else None,
            "user": None,
        }

    def events(self, model: str) -> list[dict]:
        """Every event after ``response.in_progress`` and before the terminal one, unnumbered."""
        out: list[dict] = []
        for index, item in enumerate(self.output()):
            if item is self.call:
                added = {**item, "status": "in_progress", "arguments": ""}
                out.append({"type": "response.output_item.added", "output_index": index, "item": added})
                for piece in _argument_pieces(item["arguments"]):
                    out.append({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                                "output_index": index, "delta": piece})  # fmt: skip
                out.append({"type": "response.function_call_arguments.done", "item_id": item["id"],
                            "output_index": index, "name": item["name"], "arguments": item["arguments"]})  # fmt: skip
            elif item is self.search:
                added = {"id": item["id"], "type": "web_search_call", "status": "in_progress"}
                out.append({"type": "response.output_item.added", "output_index": index, "item": added})
                for phase in ("in_progress", "searching", "completed"):
                    out.append(
                        {
                            "type": f"response.web_search_call.{phase}",
                            "output_index": index,
                            "item_id": item["id"],
                        }
                    )
            else:
                out.extend(self._message_events(index, item))
            out.append({"type": "response.output_item.done", "output_index": index, "item": item})
        return out

    def _message_events(self, index: int, item: dict) -> list[dict]:
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        out: list[dict] = [
            {"type": "response.output_item.added", "output_index": index,
             "item": {**item, "status": "in_progress", "content": []}},
            {"type": "response.content_part.added", **where, "part": empty},
        ]  # fmt: skip
        for piece in split_tokens(self.text):
            if piece:
                out.append({"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []})
        for number, annotation in enumerate(self.annotations):
            out.append({"type": "response.output_text.annotation.added", **where,
                        "annotation_index": number, "annotation": annotation})  # fmt: skip
        out.append({"type": "response.output_text.done", **where, "text": self.text, "logprobs": []})
        out.append({"type": "response.content_part.done", **where, "part": item["content"][0]})
        return out


def _argument_pieces(arguments: str) -> list[str]:
    return re.findall(r"\w+|\W+", arguments) or [arguments]


def _numbered(events: list[dict]) -> list[bytes]:
    return [named_event({**event, "sequence_number": number}) for number, event in enumerate(events)]


async def responses(request: Request, emu: Emulator, dialect: Dialect) -> Response:
    denied = dialect.check_key(emu, request)
    if denied:
        return denied
    body = await read_json(request, dialect)
    if isinstance(body, Response):
        return body
    stream = bool(body.get("stream"))
    admitted = await dialect.admit(emu, request, body.get("model"), param="input", stream=stream)
    if isinstance(admitted, Response):
        return admitted
    base, fault = admitted
    prompt = parse_responses(body, base)
    if fault.noprefill and prompt.prefilled:
        return dialect.error_response(400, dialect.error(PREFILL_REFUSAL, "invalid_request_error", None, "input"))
    answer = Answer(body, prompt, decide(prompt, fault))
    if not stream:
        await before_answer(fault)
        return dialect.json(answer.response(base, final=True))
    return sse_response(_stream(answer, base, fault, dialect), dialect)


def _stream(answer: Answer, model: str, fault: Fault, dialect: Dialect):
    start = answer.response(model, final=False)
    done = answer.response(model, final=True)
    terminal = "response.incomplete" if done["status"] == "incomplete" else "response.completed"
    events = [
        {"type": "response.created", "response": start},
        {"type": "response.in_progress", "response": start},
    ]
    events += answer.events(model) + [{"type": terminal, "response": done}]
    encoded = _numbered(events)
    if fault.status is not None and fault.cut is not None:
        # in-band failure after N events: an `error` event, then `response.failed`
        kept = encoded[: min(fault.cut, len(encoded) - 1)]
        message = dialect.status_error(fault.status, model, None)["error"]["message"]
        code = "rate_limit_exceeded" if fault.status == 429 else "server_error"
        failed = answer.response(
            model, final=False, status="failed", error={"code": code, "message": message}
        )
        tail = [
            {"type": "error", "code": code, "message": message, "param": None},
            {"type": "response.failed", "response": failed},
        ]
        tail_encoded = [named_event({**e, "sequence_number": len(kept) + i}) for i, e in enumerate(tail)]
        return paced(replace(fault, cut=None, status=None), kept + tail_encoded, malformed=MALFORMED)
    return paced(fault, encoded[:-1], malformed=MALFORMED, terminator=encoded[-1:])
