"""Translation between OpenAI's Chat Completions wire format and our chat API, both ways.

- Requests: :func:`translate` turns a ``ChatCompletionIn`` into the body of a ``ChatIn`` per chain
  entry (:meth:`Translated.entry`), validated by our own schema (:meth:`Translated.validated`), so
  every limit of ``/agent/run`` applies. A value we cannot honour is an :class:`InvalidField`: a 400
  whose ``param`` names the OpenAI field, never silently dropped.
- Answers: :func:`completion` (a whole ``chat.completion`` from ``agent_run``'s answer) and
  :class:`Chunks` (``chat.completion.chunk`` events) share the finish, usage and tool-call mapping.
- Errors: :func:`error_body` is OpenAI's error object, for every error under ``/v1/`` (the site's
  error handlers pick it by path) and for the ``data: {"error": ...}`` event that ends a broken stream.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pydantic

from agent.schemas import ChatIn, FallbackIn
from agent.v1_schemas import ChatCompletionIn, ChatMessageV1
from providers import exceptions as exc

PREFIX = "/v1/"
_OUR_MESSAGE = re.compile(r"^messages\.(\d+)\b")
DONE = b"data: [DONE]\n\n"
_DATA_URL = re.compile(r"^data:([^;,]+)(?:;[^;,]*)*?;base64,(.*)$", re.DOTALL | re.IGNORECASE)
# Ours -> OpenAI's. max_steps: the agent loop ran out of steps (MCP tools), the answer is cut short.
FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter",
          "max_steps": "length"}
# Request fields of OpenAI's that some providers take as they are (their provider_options allow-list):
# passed to those, refused for the others (the answer would not be what was asked) ...
REQUIRED_OPTIONS = ("response_format", "reasoning_effort")
# ... and those that only help the provider: passed where accepted, dropped elsewhere.
OPTIONAL_OPTIONS = ("user", "parallel_tool_calls")


class InvalidField(exc.InvalidInput):
    """A 400 that names the OpenAI request field at fault (the error object's ``param``)."""

    def __init__(self, detail: str, param: str | None) -> None:
        super().__init__(detail)
        self.param = param


class ModelNotFound(exc.NotFound):
    code = "model_not_found"
    param = "model"

    def __init__(self, model: str, why: str) -> None:
        super().__init__(f"The model '{model}' does not exist: {why}")


class UnknownUrl(exc.NotFound):
    code = "unknown_url"

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"Invalid URL ({method} {path})")


def is_v1(path: str) -> bool:
    return path.startswith(PREFIX) or path == PREFIX.rstrip("/")


def _error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error")


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None,
               **extra: Any) -> dict[str, Any]:
    """OpenAI's error shape; ``extra`` (our attempts, request id) rides inside the error object,
    where the openai SDK keeps it (``APIError.body``)."""
    return {"error": {"message": message, "type": _error_type(status), "param": param, "code": code, **extra}}


# ---- requests ------------------------------------------------------------------------------------


@dataclass
class Translated:
    """A request in our terms, before it is bound to a provider config and a model."""

    chat: dict[str, Any]  # messages, tools, gen_config (without provider_options)
    options: dict[str, Any] = field(default_factory=dict)  # REQUIRED_OPTIONS asked for
    optional: dict[str, Any] = field(default_factory=dict)  # OPTIONAL_OPTIONS asked for
    origins: list[str] = field(default_factory=list)  # per message of ours, the OpenAI message it came from
    max_tokens_field: str = "max_tokens"

    def entry(self, provider_uid: str, model: str, accepted: frozenset[str]) -> dict[str, Any]:
        """The ChatIn body for one provider config whose chat ``provider_options`` allow-list is ``accepted``."""
        refused = [name for name in self.options if name not in accepted]
        if refused:
            raise InvalidField(f"{refused[0]}: not supported by the provider of '{provider_uid}'", refused[0])
        options = {**{k: v for k, v in self.optional.items() if k in accepted}, **self.options}
        return {"provider_uid": provider_uid, "model": model, **self.chat,
                "gen_config": {**self.chat["gen_config"], "provider_options": options}}

    def validated(self, schema: type[ChatIn] | type[FallbackIn], body: dict[str, Any]) -> ChatIn | FallbackIn:
        """``body`` as our schema reads it; its errors as a 400 naming the OpenAI field."""
        try:
            return schema.model_validate(body)
        except pydantic.ValidationError as error:
            problems = [self._problem(e["loc"], e["msg"].removeprefix("Value error, ")) for e in error.errors()]
            raise InvalidField("; ".join(f"{p}: {m}" if p else m for p, m in problems), problems[0][0]) from None

    def _problem(self, loc: tuple, message: str) -> tuple[str | None, str]:
        """(param, message); a whole-request check names our message index in its text: OpenAI's instead."""
        param = self._param(loc)
        found = _OUR_MESSAGE.match(message)
        if param is None and found and int(found.group(1)) < len(self.origins):
            param = self.origins[int(found.group(1))]
            message = message[found.end():].lstrip(": ")
        return param, message

    def _param(self, loc: tuple) -> str | None:
        parts = list(loc)
        if parts[:1] == ["requests"]:
            parts = parts[2:]
        if not parts:
            return None
        head = parts[0]
        if head == "messages" and len(parts) > 1 and isinstance(parts[1], int) and parts[1] < len(self.origins):
            return self.origins[parts[1]]
        if head == "tools" and len(parts) > 1:
            return f"tools.{parts[1]}.function"
        if head == "gen_config" and len(parts) > 1:
            return self.max_tokens_field if parts[1] == "max_tokens" else str(parts[1])
        if head in ("provider_uid", "model"):
            return "model"
        return str(head)


def translate(req: ChatCompletionIn) -> Translated:
    """The request in our terms; InvalidField for what cannot be honoured as asked."""
    if req.n is not None and req.n != 1:
        raise InvalidField("n: only one choice per request is supported (n=1)", "n")
    tools = [_tool(t) for t in req.tools or ()]
    _check_tool_choice(req.tool_choice, bool(tools))
    messages: list[dict[str, Any]] = []
    origins: list[str] = []
    for index, message in enumerate(req.messages):
        where = f"messages.{index}"
        for ours in _message(message, where):
            messages.append(ours)
            origins.append(where)
    max_field = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
    gen = {
        "temperature": req.temperature, "top_p": req.top_p, "max_tokens": getattr(req, max_field),
        "stop": req.stop, "seed": req.seed, "presence_penalty": req.presence_penalty,
        "frequency_penalty": req.frequency_penalty,
    }
    options: dict[str, Any] = {}
    # {"type": "text"} is what every provider answers anyway: no reason to refuse it anywhere.
    if req.response_format is not None and req.response_format.get("type") != "text":
        options["response_format"] = req.response_format
    if req.reasoning_effort is not None:
        options["reasoning_effort"] = req.reasoning_effort
    optional = {name: getattr(req, name) for name in OPTIONAL_OPTIONS if getattr(req, name) is not None}
    chat = {"messages": messages, "tools": tools, "gen_config": {k: v for k, v in gen.items() if v is not None}}
    return Translated(chat, options, optional, origins, max_field)


def _tool(tool) -> dict[str, Any]:
    function = tool.function
    body = {"kind": "function", "name": function.name, "description": function.description or ""}
    if function.parameters is not None:
        body["parameters"] = function.parameters
    return body


def _check_tool_choice(choice, has_tools: bool) -> None:
    # Our chat API has no tool choice of its own: `auto` is what every provider does with tools,
    # `none` without tools means nothing; anything else would be ignored, so it is refused.
    if choice is None or choice == "auto" or (choice == "none" and not has_tools):
        return
    raise InvalidField("tool_choice: only 'auto' is supported (and 'none' when no tools are offered)", "tool_choice")


def _text(content: Any, where: str, *, optional: bool = False) -> str:
    """A message's text: a string, or a list of text parts (joined by new lines)."""
    if content is None and optional:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidField(f"{where}.content: must be a string or a list of content parts", f"{where}.content")
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise InvalidField(f"{where}.content.{index}: only text parts are accepted in this message",
                               f"{where}.content.{index}")
        texts.append(part["text"])
    return "\n".join(texts)


def _data_url(url: Any, where: str) -> tuple[str, str]:
    """(mime type, base64 data) of a ``data:<mime>;base64,<data>`` URL."""
    match = _DATA_URL.match(url) if isinstance(url, str) else None
    if match is None:
        raise InvalidField(f"{where}: only base64 data URLs (data:image/png;base64,...) are accepted: "
                           "the proxy does not fetch URLs", where)
    return match.group(1).lower(), match.group(2)


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    """A user message: its images (and files) as binary messages, the last one captioned with the
    message's text, so that text and attachments stay one turn; without attachments, one text message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise InvalidField(f"{where}.content: must be a string or a list of content parts", f"{where}.content")
    texts: list[str] = []
    binaries: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        at = f"{where}.content.{index}"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url" and isinstance(part.get("image_url"), dict):
            mime, data = _data_url(part["image_url"].get("url"), f"{at}.image_url.url")
            binaries.append({"role": "user", "content": data, "mime_type": mime})
        elif kind == "file" and isinstance(part.get("file"), dict) and "file_id" not in part["file"]:
            mime, data = _data_url(part["file"].get("file_data"), f"{at}.file.file_data")
            binaries.append({"role": "user", "content": data, "mime_type": mime})
        else:
            raise InvalidField(f"{at}: accepted parts are text, image_url and file (as base64 data URLs)", at)
    text = "\n".join(texts)
    if not binaries:
        return [{"role": "user", "content": text}]
    if text:
        binaries[-1]["caption"] = text
    return binaries


def _call(call, where: str) -> dict[str, Any]:
    try:
        arguments = json.loads(call.function.arguments or "{}")
    except json.JSONDecodeError:
        arguments = None
    if not isinstance(arguments, dict):
        raise InvalidField(f"{where}.function.arguments: must be a JSON object in a string", f"{where}.function.arguments")
    qalby = (call.extra_content or {}).get("qalby")
    signature = qalby.get("signature") if isinstance(qalby, dict) else None
    return {"id": call.id, "name": call.function.name, "arguments": arguments, "signature": signature}


def _message(m: ChatMessageV1, where: str) -> list[dict[str, Any]]:
    if m.tool_calls and m.role != "assistant":
        raise InvalidField(f"{where}.tool_calls: only assistant messages carry tool calls", f"{where}.tool_calls")
    if (m.tool_call_id is not None) != (m.role == "tool"):
        raise InvalidField(f"{where}.tool_call_id: a tool message needs one, and only a tool message has one",
                           f"{where}.tool_call_id")
    if m.role in ("system", "developer"):
        return [{"role": "system", "content": _text(m.content, where)}]
    if m.role == "user":
        return _user(m.content, where)
    if m.role == "tool":
        return [{"role": "tool", "content": _text(m.content, where), "tool_call_id": m.tool_call_id}]
    calls = [_call(c, f"{where}.tool_calls.{i}") for i, c in enumerate(m.tool_calls or ())]
    return [{"role": "assistant", "content": _text(m.content, where, optional=True), "tool_calls": calls}]


# ---- answers -------------------------------------------------------------------------------------


def served_model(provider_uid: str, model: str) -> str:
    """The answer's ``model``: the one that served it, named as a client names it (``provider_uid/model``)."""
    return f"{provider_uid}/{model}"


def finish_reason(ours: str) -> str:
    return FINISH.get(ours, "stop")


def usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens}


def tool_call(call_id: str, name: str, arguments: dict[str, Any], signature: str | None) -> dict[str, Any]:
    """A call as OpenAI sends it; our signature (Gemini's, Claude's state) rides in ``extra_content``,
    which the openai SDK keeps on the call and sends back with it."""
    out = {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
    if signature:
        out["extra_content"] = {"qalby": {"signature": signature}}
    return out


def completion(answer: dict[str, Any], completion_id: str, created: int) -> dict[str, Any]:
    """``agent_run``'s answer as a ``chat.completion``."""
    calls = [tool_call(c["id"], c["name"], c["arguments"], c["signature"]) for c in answer["tool_calls"]]
    message: dict[str, Any] = {"role": "assistant", "content": answer["output"], "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": completion_id, "object": "chat.completion", "created": created,
        "model": served_model(answer["provider_uid"], answer["model"]),
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason(answer["finish_reason"])}],
        "usage": usage(answer["usage"]["input_tokens"], answer["usage"]["output_tokens"]),
    }


def event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


@dataclass
class Chunks:
    """The ``chat.completion.chunk`` events of one streamed answer."""

    completion_id: str
    created: int
    model: str
    calls: int = 0  # tool calls sent so far: each has the next index

    def _chunk(self, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> bytes:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        return event({"id": self.completion_id, "object": "chat.completion.chunk", "created": self.created,
                      "model": self.model, "choices": choices, **extra})

    def start(self) -> bytes:
        return self._chunk({"role": "assistant", "content": "", "refusal": None})

    def text(self, text: str) -> bytes:
        return self._chunk({"content": text})

    def tool_call(self, call_id: str, name: str, arguments: dict[str, Any], signature: str | None) -> bytes:
        # Sent whole, in one chunk (our adapters hand calls over complete): a valid OpenAI stream too.
        self.calls += 1
        return self._chunk({"tool_calls": [{"index": self.calls - 1, **tool_call(call_id, name, arguments, signature)}]})

    def finish(self, ours: str) -> bytes:
        return self._chunk({}, finish_reason(ours))

    def usage(self, input_tokens: int, output_tokens: int) -> bytes:
        return self._chunk(None, usage=usage(input_tokens, output_tokens))
