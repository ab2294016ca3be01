"""No input yields a server error: every public endpoint, fed mutations of valid bodies and raw junk.

Each leaf of a valid body is replaced by odd values (wrong types, huge numbers, empty and long
strings, nesting) or removed, and an unknown field is added. Whatever the outcome, the answer is
a success, a 4xx with ``{"detail": ...}``, or the 502/504 of a provider failure; a stream always
ends with ``done`` or ``error``. Seeded, so a failure is reproducible.
"""

import asyncio
import copy
import json
import random

import pytest

from providers.requestlogs.batching import writer
from tests.agent.helpers import chain, single
from tests.audio.helpers import speak, transcribe, wav_file

pytestmark = pytest.mark.django_db(transaction=True)

ODD = [None, -1, 0, 10**30, -(10**30), 1e308, 1.5, "", "x" * 5000, [], {}, True, "\u0000", [[[]]], {"a": {"b": None}},
       "m1~e500", "../../etc/passwd", "%s%n", "\ud800"]
UPSTREAM = {502, 504}  # a provider's failure, reported as such


def leaves(obj, path=()):
    yield path
    children = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in children:
        yield from leaves(value, (*path, key))


def changed(obj, path, value=...):
    """A copy of ``obj`` with the leaf at ``path`` set to ``value``, or removed when no value is given."""
    if not path:
        return value
    obj = copy.deepcopy(obj)
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    if value is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


def mutations(body, rnd, per_leaf=2):
    for path in leaves(body):
        for value in rnd.sample(ODD, per_leaf):
            yield changed(body, path, value)
        if path:
            yield changed(body, path)
    yield {**body, "unknown_field": 1}


def valid_bodies():
    wav = wav_file(0.2)
    function = {"kind": "function", "name": "clock", "description": "d", "parameters": {"type": "object"}}
    search = {"kind": "web_search", "search_context_size": 3, "kwargs": {"user_location": {"country": "FR"}}}
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                {"role": "model", "content": "", "tool_calls": [
                    {"id": "c1", "name": "clock", "arguments": {"tz": "UTC"}, "signature": "abcd"}]},
                {"role": "tool", "tool_call_id": "c1", "content": "12:00"},
                {"role": "user", "content": "aGVsbG8=", "mime_type": "image/png", "caption": "c"}]
    gen = {"temperature": 0.2, "max_tokens": 50, "stop": ["x"]}
    for provider in ["openai", "anthropic", "google", "groq"]:
        tools = [function, search] if provider != "groq" else [function]  # groq's m1 cannot search
        options = {"top_k": 1} if provider in ("google", "anthropic") else {"user": "a"}  # allow-listed fields
        body = single(provider, gen_config={**gen, "provider_options": options}, messages=messages, tools=tools)
        yield "/agent/run", body
        yield "/agent/run_stream", body
    yield "/agent/run", chain(single("openai"), single("google"), strategy="parallel", timeout_per_request=5)
    yield "/audio/speak", speak("openai")
    yield "/audio/speak_stream", chain(speak("elevenlabs"), speak("openai"))
    yield "/audio/transcribe_json", transcribe("openai", "whisper-1", wav, language="en")
    yield "/audio/transcribe_json", chain(transcribe("groq", "whisper-large-v3", wav), transcribe("elevenlabs", "scribe_v1", wav))


async def post(client, path, body):
    """As a client sends it: ASCII JSON, so odd characters travel as escapes (a lone surrogate too)."""
    return await client.post(path, content=json.dumps(body), headers={"content-type": "application/json"}, timeout=30)


def judged(path, body, status, text, content_type) -> str | None:
    """What is wrong with an answer, if anything."""
    if status >= 500 and status not in UPSTREAM:
        return f"{status}: {text[:300]}"
    if status >= 400:
        try:
            assert "detail" in json.loads(text)
        except (ValueError, AssertionError, TypeError):
            return f"{status} without a JSON detail: {text[:300]}"
    elif content_type.startswith("application/x-ndjson"):
        last = json.loads(text.strip().splitlines()[-1])
        if last["type"] not in ("done", "error"):
            return f"a stream ended without done or error: {text[-300:]}"
    return None


async def test_mutated_bodies_get_an_answer_or_a_4xx_never_a_server_error(user, configs):
    rnd, wrong, dropped_before = random.Random(7), [], writer.dropped
    for path, body in valid_bodies():
        valid = await user.post(path, json=body, timeout=30)
        assert valid.status_code == 200, (path, valid.text)  # so that mutations reach past the first check
        for mutated in mutations(body, rnd):
            response = await post(user, path, mutated)
            text = (await response.aread()).decode(errors="replace")
            problem = judged(path, mutated, response.status_code, text, response.headers.get("content-type", ""))
            if problem:
                wrong.append(f"POST {path} {json.dumps(mutated)[:300]} -> {problem}")
    assert wrong == []
    # Everything accepted was logged: no record the database refused.
    assert await asyncio.to_thread(writer.flush, 10) and writer.dropped == dropped_before


async def test_config_api_and_raw_bodies_never_get_a_server_error(http, make_key, emulator):
    http.headers["Authorization"] = f"Bearer {await make_key('use', 'manage')}"
    rnd, wrong = random.Random(11), []
    config = {"uid": "fz", "provider": "openai", "api_key": "sk-test-123456", "base_url": emulator.base_urls["openai"],
              "options": {"timeouts": {"first_chunk": 3}}, "enabled": True}
    bodies = list(mutations(config, rnd, per_leaf=4))
    bodies += [{**config, "provider": provider, "options": options}
               for provider in ["openai", "anthropic", "google", "groq", "elevenlabs", "nope"]
               for options in [{"api_version": "v9"}, {"x": 1}, {"timeouts": {"idle": -1}}, {"timeouts": "x"}]]
    # NUL characters where they would be stored (PostgreSQL's text and jsonb refuse them).
    bodies += [{**config, "options": {"organization": "org\u0000"}}, {**config, "api_key": "sk-\u0000-123456"},
               {**config, "uid": "a\u0000b"}]
    for body in bodies:
        response = await post(http, "/providers/config", body)
        problem = judged("/providers/config", body, response.status_code, response.text, "")
        if problem:
            wrong.append(f"POST /providers/config {json.dumps(body)[:300]} -> {problem}")
    junk = [(b"{", "application/json"), (b"[]", "application/json"), (b"null", "application/json"),
            (b"\xff\xfe", "application/json"), (b"a=b", "application/x-www-form-urlencoded"),
            (b"--x\r\n", "multipart/form-data; boundary=x"), (b"{}", "text/plain"),
            (b'{"a":' * 5000, "application/json"), (b"1e999999", "application/json")]
    for path in ["/agent/run", "/agent/run_stream", "/audio/speak", "/audio/speak_stream", "/audio/transcribe",
                 "/audio/transcribe_json", "/providers/config"]:
        for content, content_type in junk:
            response = await http.post(path, content=content, headers={"content-type": content_type})
            problem = judged(path, content, response.status_code, response.text, "")
            if problem:
                wrong.append(f"POST {path} {content[:40]!r} as {content_type} -> {problem}")
    wav = wav_file(0.2)
    forms = [{"provider_uid": "openai", "model": "whisper-1"}, {"provider_uid": "openai"}, {},
             {"provider_uid": "openai", "model": "whisper-1", "language": "zz-invalid", "temperature": "hot"},
             {"provider_uid": "openai", "model": "whisper-1", "requests": "[1]"}, {"provider_uid": "nope", "model": "m"}]
    uploads = [{"file": ("a.wav", wav, "audio/wav")}, {"file": ("a.exe", b"MZ", "application/x-dosexec")},
               {"file": ("", b"", "audio/wav")}, {}, {"other": ("a.wav", wav, "audio/wav")}]
    for fields in forms:
        for files in uploads:
            response = await http.post("/audio/transcribe", data=fields, files=files)
            problem = judged("/audio/transcribe", fields, response.status_code, response.text, "")
            if problem:
                wrong.append(f"POST /audio/transcribe {fields} {list(files)} -> {problem}")
    for method, path in [("GET", "/agent/run"), ("PUT", "/providers/config"), ("DELETE", "/providers/config/%00"),
                         ("DELETE", "/providers/config/" + "x" * 300), ("PATCH", "/audio/speak"), ("GET", "/nope"),
                         ("GET", "/admin/providers/requestlog/?q=%00"), ("GET", "/admin/?e=%00"),
                         ("POST", "/agent/%00x"), ("GET", "/providers/configs?x=%00")]:
        response = await http.request(method, path)
        problem = judged(path, None, response.status_code, response.text, "")
        if problem:
            wrong.append(f"{method} {path} -> {problem}")
    assert wrong == []
