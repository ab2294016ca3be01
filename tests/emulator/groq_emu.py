"""Groq: OpenAI-compatible chat completions and Whisper transcription under ``/openai/v1``.

The Groq SDK's paths already start with ``/openai/v1``, so its base URL is the bare prefix. The
endpoints are the OpenAI emulator's; ``GroqDialect`` holds what Groq does differently
(wire-formats.md §5): usage in ``x_groq.usage`` of the last chunk, whole tool calls in one chunk,
timing fields in ``usage``, error bodies without ``param``.

Compound systems (``groq/compound``, ``groq/compound-mini``) search the web on their own, without a
``tools`` entry: the answer quotes the hits, and the search is reported in the message's
``executed_tools`` (``type: "search"``, its JSON ``arguments``, a text ``output`` and
``search_results.results``). A stream announces the tool in one delta (arguments only) and
reports its results in a second delta of the same index, before any content.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from tests.emulator.core import Emulator, Prompt, search_results, split_tokens
from tests.emulator.openai_emu import bind, model_routes, unknown_route
from tests.emulator.openai_emu_audio import transcriptions
from tests.emulator.openai_emu_chat import ChatDialect, Turn, chat_completions
from tests.emulator.openai_emu_common import new_id

PROVIDER = "groq"
MODELS = ("llama-3.3-70b-versatile", "llama-3.1-8b-instant", "openai/gpt-oss-120b", "groq/compound",
          "groq/compound-mini", "whisper-large-v3", "whisper-large-v3-turbo")  # fmt: skip


def _compound(model: str) -> bool:
    return model.rsplit("/", 1)[-1].startswith("compound")


def _search(query: str, *, done: bool) -> dict[str, Any]:
    """One ``executed_tools`` entry: announced (arguments only) or done (with its results)."""
    tool: dict[str, Any] = {"index": 0, "type": "search", "arguments": json.dumps({"query": query})}
    if done:
        hits = search_results(query)
        tool["output"] = "\n\n".join(
            f"Title: {h['title']}\nURL: {h['url']}\nContent: {h['snippet']}" for h in hits
        )
        tool["search_results"] = {
            "results": [
                {
                    "title": h["title"],
                    "url": h["url"],
                    "content": h["snippet"],
                    "score": round(0.9 - i / 10, 2),
                }
                for i, h in enumerate(hits)
            ],
        }
    return tool


def base_url(prefix: str) -> str:
    return prefix


class GroqDialect(ChatDialect):
    provider = "groq"
    always_param = False
    default_wait = 7.5
    system_fingerprint = "fp_emulator02"

    def headers(self, *, limited: float | None = None) -> dict[str, str]:
        return {
            "x-request-id": new_id("req_01", 24),
            "x-ratelimit-limit-requests": "14400",
            "x-ratelimit-limit-tokens": "6000",
            "x-ratelimit-remaining-requests": "0" if limited is not None else "14399",
            "x-ratelimit-remaining-tokens": "5900",
            "x-ratelimit-reset-requests": f"{limited:g}s" if limited is not None else "6s",
            "x-ratelimit-reset-tokens": "1s",
        }

    def auth_error(self, key: str | None) -> dict:
        return self.error("Invalid API Key", "invalid_request_error", "invalid_api_key")

    def status_error(self, status: int, model: str, retry_after: float | None) -> dict:
        wait = f"{retry_after if retry_after is not None else self.default_wait:g}"
        known = {
            400: ("Bad request", "invalid_request_error", None),
            403: ("Forbidden", "permissions_error", "permission_denied"),
            404: (
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            ),
            413: (
                f"Request too large for model `{model}` in organization `org_emulator` service tier `on_demand` on "
                "tokens per minute (TPM): Limit 6000, Requested 9000, please reduce your message size and try again.",
                "tokens",
                "rate_limit_exceeded",
            ),
            429: (
                f"Rate limit reached for model `{model}` in organization `org_emulator` service tier `on_demand` on "
                f"requests per minute (RPM): Limit 30, Used 30, Requested 1. Please try again in {wait}s.",
                "requests",
                "rate_limit_exceeded",
            ),
            500: ("Internal Server Error", "internal_server_error", None),
            503: (
                f"{model} is currently over capacity. Please try again and back off exponentially. Visit "
                "https://groqstatus.com to see if there is an ongoing incident",
                "internal_server_error",
                "service_unavailable",
            ),
        }
        if status == 401:
            return self.auth_error(None)
        default_type = "internal_server_error" if status >= 500 else "invalid_request_error"
        message, type_, code = known.get(status) or (f"Emulated HTTP {status} error.", default_type, None)
        return self.error(message, type_, code)

    def context_error(self, model: str, param: str) -> dict:
        return self.error(
            "Please reduce the length of the messages or completion.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages" if param != "file" else param,
        )

    def policy_error(self, model: str) -> dict:
        # not from a recording: Groq documents no moderation error; shaped like its other 400s
        return self.error(
            "The request was rejected because it was flagged by the content safety system.",
            "invalid_request_error",
            "content_policy_violation",
        )

    def unknown_url(self, method: str, path: str) -> dict:
        return self.error(
            f"Unknown request URL: {method} {path}. Please check the URL for typos, or see the docs at "
            "https://console.groq.com/docs/",
            "invalid_request_error",
            "unknown_url",
        )

    # ---- audio ---------------------------------------------------------------------------------

    def extras(self) -> dict[str, Any]:
        return {"x_groq": {"id": new_id("req_01", 24)}}

    def language_name(self, code: str) -> str:
        return super().language_name(code).capitalize()

    def transcription_usage(self, model: str, text: str, seconds: float, *, verbose: bool) -> dict[str, Any]:
        return {}

    # ---- chat ----------------------------------------------------------------------------------

    def prompt(self, body: dict, base_model: str) -> Prompt:
        return dataclasses.replace(super().prompt(body, base_model), web_search=_compound(base_model))

    def usage(self, turn: Turn) -> dict[str, Any]:
        prompt_time, completion_time = 0.0001 * turn.prompt_tokens, 0.002 * turn.completion_tokens
        return {
            "queue_time": 0.05,
            "prompt_tokens": turn.prompt_tokens,
            "prompt_time": round(prompt_time, 6),
            "completion_tokens": turn.completion_tokens,
            "completion_time": round(completion_time, 6),
            "total_tokens": turn.prompt_tokens + turn.completion_tokens,
            "total_time": round(prompt_time + completion_time, 6),
        }

    def envelope(self, cid: str, model: str, obj: str) -> dict[str, Any]:
        head = super().envelope(cid, model, obj)
        del head["service_tier"]
        return head

    def message(self, turn: Turn) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": turn.text}
        if turn.call:
            call_id, name, args = turn.call
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
            ]
        if turn.query is not None:
            message["reasoning"] = f"Searching the web for: {turn.query}"
            message["executed_tools"] = [_search(turn.query, done=True)]
        return message

    def completion(self, cid: str, model: str, turn: Turn) -> dict[str, Any]:
        body = super().completion(cid, model, turn)
        return {**body, "usage_breakdown": {"models": None}, "x_groq": {"id": new_id("req_01", 24)}}

    def chunk(self, head: dict, delta: dict, finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            **head,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **extra,
        }

    def chunks(self, head: dict, turn: Turn, include_usage: bool) -> list[dict[str, Any]]:
        request = new_id("req_01", 24)
        if turn.call:
            call_id, name, args = turn.call
            call = {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": args},
                "index": 0,
            }
            out = [
                self.chunk(head, {"role": "assistant", "content": None}, x_groq={"id": request}),
                self.chunk(head, {"tool_calls": [call]}),
            ]
        else:
            out = [self.chunk(head, {"role": "assistant", "content": ""}, x_groq={"id": request})]
            if turn.query is not None:
                out += [
                    self.chunk(head, {"executed_tools": [_search(turn.query, done=done)]})
                    for done in (False, True)
                ]
            out += [self.chunk(head, {"content": piece}) for piece in split_tokens(turn.text or "") if piece]
        out.append(self.chunk(head, {}, turn.finish, x_groq={"id": request, "usage": self.usage(turn)}))
        if include_usage:
            out.append({**head, "choices": [], "usage": self.usage(turn), "x_groq": {"id": request}})
        return out


def app(emu: Emulator) -> Starlette:
    dialect = GroqDialect()
    routes = [
        Route("/openai/v1/chat/completions", bind(chat_completions, emu, dialect), methods=["POST"]),
        Route("/openai/v1/audio/transcriptions", bind(transcriptions, emu, dialect), methods=["POST"]),
        Route(
            "/openai/v1/audio/translations",
            bind(transcriptions, emu, dialect, task="translate"),
            methods=["POST"],
        ),
        *model_routes(emu, dialect, "/openai/v1", MODELS, "Groq"),
        unknown_route(dialect),
    ]
    return Starlette(routes=routes)
