"""Gemini's side of the emulator: request -> Prompt, and GenerateContentResponse bodies / chunks.

The REST API takes camelCase and snake_case field names alike (google-genai 3.6.1 itself sends
``inlineData`` with a snake ``mime_type``, and URL-safe base64 data), so every field is read
both ways. Responses use camelCase and proto3 JSON rules: zero-valued fields (such as a
segment's ``startIndex`` 0) are omitted, as the real API does.

Thought signatures: every ``functionCall`` part the model makes carries a ``thoughtSignature``. As
Gemini 3 does, a ``gemini-3*`` model refuses (400) a request whose current turn (the contents after
the last user text) holds a model step whose first ``functionCall`` part has no signature, or one
this emulator did not issue; the documented bypass ``skip_thought_signature_validator`` passes.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from tests.emulator.core import Fault, Prompt, count_tokens, next_action, search_results, split_tokens, words


class InvalidArgument(Exception):
    """A request the real API rejects with 400 INVALID_ARGUMENT."""


def get(obj: dict[str, Any], camel: str, default: Any = None) -> Any:
    """``obj[camel]``, or its snake_case spelling."""
    if camel in obj:
        return obj[camel]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return obj.get(snake, default)


def _decode(data: Any, where: str) -> None:
    text = data if isinstance(data, str) else ""
    try:
        base64.b64decode(text.translate(str.maketrans("-_", "+/")) + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(
            f"Invalid value at '{where}' (TYPE_BYTES), Base64 decoding failed for \"{text[:40]}\""
        ) from None


SIGNED = b"emulator-thought:"
BYPASS = "skip_thought_signature_validator"


def new_signature() -> str:
    return base64.urlsafe_b64encode(SIGNED + secrets.token_bytes(12)).decode()


def _signed(signature: Any) -> bool:
    if signature == BYPASS:
        return True
    try:
        return isinstance(signature, str) and base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)).startswith(SIGNED)
    except (binascii.Error, ValueError):
        return False


def _check_signatures(contents: list[Any], model: str) -> None:
    """Gemini 3's rule: in the current turn, each model step's first call must come back signed."""
    if not model.startswith("gemini-3"):
        return
    turn_start = max(
        (i for i, c in enumerate(contents) if c.get("role", "user") == "user" and _parts_text(c)), default=0
    )
    for content in contents[turn_start:]:
        calls = [p for p in get(content, "parts", []) or [] if isinstance(p, dict) and get(p, "functionCall")]
        if content.get("role") != "model" or not calls:
            continue
        signature = get(calls[0], "thoughtSignature")
        if signature is None:
            name = get(calls[0], "functionCall").get("name")
            raise InvalidArgument(
                "Function call is missing a thought_signature in functionCall parts. This is required for tools "
                "to work correctly, and missing thought_signature may lead to degraded model performance. "
                f"Additional data, function call `default_api:{name}` , position 1. Please refer to "
                "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
            )
        if not _signed(signature):
            raise InvalidArgument("Corrupted thought signature.")


def _result_text(response: Any) -> str:
    """A functionResponse as the model 'reads' it: a lone string value as is, else compact JSON."""
    if isinstance(response, dict) and len(response) == 1:
        (value,) = response.values()
        if isinstance(value, str):
            return value
    return json.dumps(response, separators=(",", ":"), sort_keys=True)


def _parts_text(content: Any) -> str:
    parts = get(content, "parts", []) if isinstance(content, dict) else []
    return "\n".join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))


def read_prompt(body: dict[str, Any], model: str) -> Prompt:
    contents = get(body, "contents")
    if not isinstance(contents, list) or not contents:
        raise InvalidArgument("* GenerateContentRequest.contents: contents is not specified\n")
    system = _parts_text(get(body, "systemInstruction")) or None
    texts: list[str] = [system] if system else []
    mimes: list[str] = []
    last_user_text, results = "", []
    for c_index, content in enumerate(contents):
        if not isinstance(content, dict):
            raise InvalidArgument(f"Invalid value at 'contents[{c_index}]', expected a Content object")
        user_texts, own_results = [], []
        for p_index, part in enumerate(get(content, "parts", []) or []):
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
                user_texts.append(part["text"])
            elif (blob := get(part, "inlineData")) is not None:
                _decode(blob.get("data"), f"contents[{c_index}].parts[{p_index}].inline_data.data")
                mimes.append(get(blob, "mimeType") or "application/octet-stream")
            elif (ref := get(part, "fileData")) is not None:
                mimes.append(get(ref, "mimeType") or "application/octet-stream")
            elif (call := get(part, "functionCall")) is not None:
                texts.append(json.dumps(call.get("args") or {}))
            elif (answer := get(part, "functionResponse")) is not None:
                texts.append(_result_text(answer.get("response")))
                own_results.append(_result_text(answer.get("response")))
        if content.get("role", "user") != "user":
            continue
        if user_texts:
            # A user turn with text starts a new exchange: earlier tool results are history.
            last_user_text, results = "\n".join(user_texts), []
        results.extend(own_results)
    _check_signatures(contents, model)
    config = get(body, "generationConfig") or {}
    tools = [t for t in get(body, "tools") or [] if isinstance(t, dict)]
    names = [d.get("name") for t in tools for d in get(t, "functionDeclarations") or []]
    return Prompt(
        base_model=model,
        last_user_text=last_user_text,
        system=system,
        mimes=tuple(mimes),
        temperature=config.get("temperature"),
        max_tokens=get(config, "maxOutputTokens"),
        tool_names=tuple(n for n in names if n),
        tool_results=tuple(results),
        web_search=any(
            get(t, "googleSearch") is not None or get(t, "googleSearchRetrieval") is not None for t in tools
        ),
        input_text="\n".join(texts),
        prefilled=isinstance(contents[-1], dict) and contents[-1].get("role") == "model",
    )


# ---- the model's turn -------------------------------------------------------------------------


@dataclass
class Answer:
    model: str
    prompt_tokens: int
    call: tuple[str, dict[str, Any]] | None = None
    text: str = ""
    finish: str = "STOP"
    grounding: dict[str, Any] | None = None
    tool_prompt_tokens: int = 0
    signature: str = field(default_factory=new_signature)
    response_id: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    @property
    def output_tokens(self) -> int:
        return count_tokens(json.dumps(self.call[1]) if self.call else self.text)


def _grounding(query: str, text: str) -> tuple[dict[str, Any], int]:
    hits = search_results(query)
    segment: dict[str, Any] = {"endIndex": len(text.encode()), "text": text}
    metadata = {
        "searchEntryPoint": {"renderedContent": f'<div class="container">{query}</div>'},
        "groundingChunks": [{"web": {"uri": hit["url"], "title": hit["title"]}} for hit in hits],
        "groundingSupports": [{"segment": segment, "groundingChunkIndices": list(range(len(hits)))}],
        "webSearchQueries": [query],
    }
    return metadata, sum(count_tokens(hit["snippet"]) for hit in hits)


def answer(body: dict[str, Any], prompt: Prompt, fault: Fault) -> Answer:
    result = Answer(model=prompt.base_model, prompt_tokens=count_tokens(prompt.input_text))
    action, value = next_action(prompt)
    if action == "call":
        result.call = value
        return result
    text = " ".join(words(fault.tokens, prompt.last_user_text)) if fault.tokens else value
    stops = get(get(body, "generationConfig") or {}, "stopSequences") or []
    for stop in stops:
        if stop and stop in text:
            text = text[: text.index(stop)]
    if prompt.max_tokens is not None and count_tokens(text) > prompt.max_tokens:
        text = "".join([p for p in split_tokens(text) if p.strip()][: prompt.max_tokens]).rstrip()
        result.finish = "MAX_TOKENS"
    result.text = text
    if prompt.web_search:
        result.grounding, result.tool_prompt_tokens = _grounding(prompt.last_user_text, text)
    return result


# ---- response bodies --------------------------------------------------------------------------


def _usage(result: Answer, final: bool) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": result.prompt_tokens}
    output = result.output_tokens if final else 0
    if output:
        usage["candidatesTokenCount"] = output
    usage["totalTokenCount"] = result.prompt_tokens + output + result.tool_prompt_tokens
    if result.prompt_tokens:
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": result.prompt_tokens}]
    if output:
        usage["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": output}]
    if result.tool_prompt_tokens:
        usage["toolUsePromptTokenCount"] = result.tool_prompt_tokens
    return usage


def _envelope(result: Answer, candidate: dict[str, Any] | None, final: bool) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if candidate is not None:
        body["candidates"] = [candidate]
    body["usageMetadata"] = _usage(result, final)
    body["modelVersion"] = result.model
    body["responseId"] = result.response_id
    return body


def _parts(result: Answer, text: str) -> list[dict[str, Any]]:
    if result.call:
        name, args = result.call
        return [{"functionCall": {"name": name, "args": args}, "thoughtSignature": result.signature}]
    return [{"text": text}]


def response_body(result: Answer) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "content": {"parts": _parts(result, result.text), "role": "model"},
        "finishReason": result.finish,
    }
    if result.grounding:
        candidate["groundingMetadata"] = result.grounding
    return _envelope(result, candidate, final=True)


def stream_bodies(result: Answer, nodone: bool) -> list[dict[str, Any]]:
    """The chunks: each holds only its new text; the last one finishReason, full usage, grounding.

    ``nodone``: the last chunk comes without finishReason (and without final usage).
    """
    pieces = [""] if result.call else split_tokens(result.text)
    chunks = []
    for number, piece in enumerate(pieces, start=1):
        last = number == len(pieces)
        candidate: dict[str, Any] = {"content": {"parts": _parts(result, piece), "role": "model"}}
        if last and not nodone:
            candidate["finishReason"] = result.finish
            if result.grounding:
                candidate["groundingMetadata"] = result.grounding
        chunks.append(_envelope(result, candidate, final=last and not nodone))
    return chunks


SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
]


def blocked_body(model: str, prompt_tokens: int) -> dict[str, Any]:
    """A prompt refused by the safety filters: HTTP 200, no candidates, promptFeedback.blockReason."""
    result = Answer(model=model, prompt_tokens=prompt_tokens)
    return {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": SAFETY_RATINGS},
        **_envelope(result, None, True),
    }
