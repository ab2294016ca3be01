"""MCP servers over streamable HTTP: the agent loop on every provider, failures as tool errors, security."""

import asyncio
import socket
import time

import pytest

from tests.agent.helpers import chain, statuses, stream, text_of
from tests.conftest import CHAT_PROVIDERS
from tests.emulator.mcp_emu import SECRET
from tests.tools.helpers import ask, calls, lines_of, mcp

pytestmark = pytest.mark.django_db(transaction=True)

ADD_THEN_LOOKUP = calls(("tool_add", {"a": 1, "b": 2}), ("tool_lookup", {"key": "pi"}))


def mcp_calls(emulator, path: str = "/mcp/mcp") -> list[dict]:
    """The tools/call requests the MCP server received, as (name, arguments)."""
    bodies = [r.json() for r in emulator.recorded("mcp", path) if r.method == "POST" and b"tools/call" in r.body]
    return [(b["params"]["name"], b["params"]["arguments"]) for b in bodies]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_an_mcp_loop_of_several_steps(user, configs, emulator, loopback_mcp, provider):
    response = await user.post("/agent/run", json=ask(provider, ADD_THEN_LOOKUP, mcp(emulator)))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["output"].endswith("tool_results=3 | 3.14159]")  # the model got both results
    assert answer["finish_reason"] == "stop" and answer["tool_calls"] == []
    assert [(r["name"], r["arguments"], r["content"], r["is_error"]) for r in answer["tool_results"]] == [
        ("tool_add", {"a": 1, "b": 2}, "3", False), ("tool_lookup", {"key": "pi"}, "3.14159", False)]
    assert answer["attempts"][0]["tools"] == ["tool_add", "tool_lookup"]
    assert len(emulator.recorded(provider)) == 3  # call, call, answer
    assert mcp_calls(emulator) == [("add", {"a": 1, "b": 2}), ("lookup", {"key": "pi"})]
    # the usage of every model turn is counted
    assert answer["usage"]["input_tokens"] > 3 * len(ADD_THEN_LOOKUP.split()) // 2


@pytest.mark.parametrize("provider", CHAT_PROVIDERS)
async def test_an_mcp_loop_streams_its_steps(user, configs, emulator, loopback_mcp, provider):
    status, lines, _ = await stream(user, ask(provider, ADD_THEN_LOOKUP, mcp(emulator)))
    assert status == 200
    kinds = [line["type"] for line in lines]
    assert kinds[:5] == ["start", "tool_call", "tool_result", "tool_call", "tool_result"]
    assert set(kinds[5:-1]) == {"delta"} and kinds[-1] == "done"
    call, result = lines[1], lines[2]
    assert (call["name"], call["arguments"]) == ("tool_add", {"a": 1, "b": 2})
    assert (result["id"], result["name"], result["content"], result["is_error"]) == (call["id"], "tool_add", "3", False)
    assert lines[4]["content"] == "3.14159"
    assert text_of(lines).endswith("tool_results=3 | 3.14159]")
    done = lines[-1]
    assert done["finish_reason"] == "stop" and "tool_calls" not in done
    assert done["attempts"][0]["tools"] == ["tool_add", "tool_lookup"]


async def test_gemini_3_gets_each_steps_thought_signature_back(user, configs, emulator, loopback_mcp):
    # The emulated gemini-3 answers 400 to a step whose call comes back without the signature it made.
    body = ask("google", ADD_THEN_LOOKUP, mcp(emulator), model="gemini-3-flash-preview")
    answer = (await user.post("/agent/run", json=body)).json()
    assert answer["output"].endswith("tool_results=3 | 3.14159]")
    status, lines, _ = await stream(user, body)
    assert status == 200 and text_of(lines).endswith("tool_results=3 | 3.14159]")
    for request in (emulator.recorded("google")[2], emulator.recorded("google")[5]):  # each loop's last turn
        steps = [c["parts"][0] for c in request.json()["contents"] if c["role"] == "model"]
        assert len(steps) == 2
        assert all(s["thoughtSignature"] not in (None, "skip_thought_signature_validator") for s in steps)


async def test_claude_with_thinking_gets_each_steps_thinking_back(user, configs, emulator, loopback_mcp):
    thinking = {"max_tokens": 2048, "provider_options": {"thinking": {"type": "enabled", "budget_tokens": 1024}}}
    body = ask("anthropic", ADD_THEN_LOOKUP, mcp(emulator), gen_config=thinking)
    answer = (await user.post("/agent/run", json=body)).json()
    assert answer["output"].endswith("tool_results=3 | 3.14159]")
    status, lines, _ = await stream(user, body)
    assert status == 200 and text_of(lines).endswith("tool_results=3 | 3.14159]")
    for request in (emulator.recorded("anthropic")[2], emulator.recorded("anthropic")[5]):  # each loop's last turn
        turns = [m["content"] for m in request.json()["messages"] if m["role"] == "assistant"]
        assert [[b["type"] for b in turn] for turn in turns] == [["thinking", "tool_use"]] * 2


@pytest.mark.parametrize("provider", ["openai", "google"])
async def test_a_failing_tool_is_an_error_the_model_sees(user, configs, emulator, loopback_mcp, provider):
    body = ask(provider, calls(("tool_fail", {"message": "boom"}), ("tool_lookup", {"key": "nope"})), mcp(emulator))
    answer = (await user.post("/agent/run", json=body)).json()
    assert [(r["content"], r["is_error"]) for r in answer["tool_results"]] == [
        ("Error executing tool fail: boom", True), ("Error executing tool lookup: unknown key 'nope'", True)]
    assert answer["finish_reason"] == "stop"
    assert "tool_results=Error executing tool fail: boom | Error executing tool lookup" in answer["output"]

    status, lines, _ = await stream(user, body)
    assert [(r["name"], r["is_error"]) for r in lines_of(lines, "tool_result")] == [
        ("tool_fail", True), ("tool_lookup", True)]
    assert lines[-1]["type"] == "done"


async def test_anthropic_is_told_a_tool_failed(user, configs, emulator, loopback_mcp):
    body = ask("anthropic", calls(("tool_fail", {"message": "boom"})), mcp(emulator))
    assert (await user.post("/agent/run", json=body)).status_code == 200
    last = emulator.recorded("anthropic")[-1].json()["messages"][-1]
    assert last["content"] == [{"type": "tool_result", "tool_use_id": last["content"][0]["tool_use_id"],
                                "content": "Error executing tool fail: boom", "is_error": True}]


async def test_a_tool_past_its_timeout_is_a_tool_error_and_the_run_goes_on(user, configs, emulator, loopback_mcp):
    body = ask("openai", calls(("tool_sleep", {"seconds": 30}), ("tool_add", {"a": 2, "b": 2})),
               mcp(emulator, timeout=0.5))
    started = time.monotonic()
    answer = (await user.post("/agent/run", json=body)).json()
    assert time.monotonic() - started < 8  # the tool's 0.5 s timeout, far from its 30 s sleep
    assert [(r["name"], r["content"], r["is_error"]) for r in answer["tool_results"]] == [
        ("tool_sleep", "tool sleep did not answer within 0.5s", True), ("tool_add", "4", False)]
    assert answer["attempts"][0]["status"] == "ok" and answer["attempts"][0]["tools"] == ["tool_sleep", "tool_add"]
    assert answer["output"].endswith("tool_results=tool sleep did not answer within 0.5s | 4]")


@pytest.mark.parametrize("path", ["/agent/run", "/agent/run_stream"])
async def test_an_unreachable_server_is_reported_and_the_run_goes_on(user, configs, emulator, loopback_mcp, path):
    url = f"http://127.0.0.1:{closed_port()}/mcp"
    body = ask("groq", calls(("tool_add", {"a": 1, "b": 1})), {"kind": "mcp_streamable", "url": url, "timeout": 2})
    status, answer, _ = await stream(user, body, path)
    assert status == 200
    if path == "/agent/run":
        (failure,) = answer["tool_results"]
        assert answer["finish_reason"] == "stop" and answer["attempts"][0]["tools"] == []
    else:
        assert [line["type"] for line in answer[:2]] == ["start", "tool_result"]
        failure = answer[1]
    assert failure["id"] is None and failure["name"] == "tool_*" and failure["is_error"] is True
    assert f"127.0.0.1:{url.split(':')[2]}" in failure["content"] and "unreachable" in failure["content"]
    assert emulator.recorded("groq")[0].json().get("tools") is None  # nothing offered from that server


async def test_a_server_that_never_answers_is_given_up_after_its_timeout(user, configs, emulator, loopback_mcp):
    async def silent(reader, writer):
        await reader.read(65536)  # take the request, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        body = ask("anthropic", "hi", {"kind": "mcp_streamable", "url": f"http://127.0.0.1:{port}/mcp", "timeout": 0.5})
        answer = (await user.post("/agent/run", json=body)).json()
        assert time.monotonic() - started < 6  # its 0.5 s timeout: the server never answers
    finally:
        server.close()
    (failure,) = answer["tool_results"]
    assert "no answer within 0.5s" in failure["content"] and failure["is_error"] is True
    assert answer["finish_reason"] == "stop"


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/mcp",
    "http://192.168.1.20:8080/mcp",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]:9000/mcp",
    "http://[::ffff:127.0.0.1]/mcp",
    "http://[::7f00:1]/mcp",
    "http://[64:ff9b::7f00:1]/mcp",
    "http://[2002:7f00:1::1]/mcp",
    "http://0.0.0.0:8000/mcp",
    "http://localhost/mcp",
])
async def test_a_private_url_is_refused_before_anything_runs(user, configs, emulator, url):
    for path in ("/agent/run", "/agent/run_stream"):
        response = await user.post(path, json=ask("openai", "hi", {"kind": "mcp_streamable", "url": url}))
        assert response.status_code == 400
        assert "QALBY_MCP_ALLOWED_HOSTS" in response.json()["detail"]
    assert emulator.recorded() == []


async def test_loopback_is_refused_unless_listed(user, configs, emulator, settings):
    body = ask("openai", "hi", mcp(emulator))
    assert (await user.post("/agent/run", json=body)).status_code == 400
    settings.QALBY_MCP_ALLOWED_HOSTS = ["127.0.0.0/8"]  # a network works as well as an address
    assert (await user.post("/agent/run", json=body)).status_code == 200
    assert emulator.recorded("mcp")


async def test_several_servers_work_together(user, configs, emulator, loopback_mcp):
    servers = [mcp(emulator, prefix="a_"),
               mcp(emulator, protected=True, prefix="b_", kwargs={"headers": {"Authorization": f"Bearer {SECRET}"}})]
    body = ask("google", calls(("a_add", {"a": 5, "b": 5}), ("b_lookup", {"key": "qalby"})), *servers)
    answer = (await user.post("/agent/run", json=body)).json()
    assert [(r["name"], r["content"]) for r in answer["tool_results"]] == [("a_add", "10"), ("b_lookup", "heart")]
    assert mcp_calls(emulator, "/mcp/protected/mcp") == [("lookup", {"key": "qalby"})]
    offered = emulator.recorded("google")[0].json()["tools"][0]["functionDeclarations"]
    assert sorted(d["name"] for d in offered) == sorted(f"{p}_{n}" for p in "ab" for n in ("add", "lookup", "fail", "sleep"))


@pytest.mark.parametrize("tools", [
    [{"prefix": "x_"}, {"prefix": "x_"}],
    [{"prefix": ""}, {"kind": "function", "name": "add"}],
], ids=["two servers, one prefix", "a function of the same name"])
async def test_name_clashes_are_refused(user, configs, emulator, loopback_mcp, tools):
    body = ask("openai", "hi", *[t if t.get("kind") == "function" else mcp(emulator, **t) for t in tools])
    response = await user.post("/agent/run", json=body)
    assert response.status_code == 400
    assert "clash" in response.json()["detail"]
    assert emulator.recorded("openai") == []


async def test_allowed_tools_limits_what_is_offered(user, configs, emulator, loopback_mcp):
    body = ask("openai", calls(("tool_fail", {"message": "x"})), mcp(emulator, kwargs={"allowed_tools": ["add"]}))
    answer = (await user.post("/agent/run", json=body)).json()
    assert answer["tool_results"] == [] and mcp_calls(emulator) == []
    assert [t["function"]["name"] for t in emulator.recorded("openai")[0].json()["tools"]] == ["tool_add"]


async def test_headers_reach_the_server_and_are_never_shown(user, configs, emulator, loopback_mcp, captured_logs):
    with_secret = mcp(emulator, protected=True, kwargs={"headers": {"Authorization": f"Bearer {SECRET}"}})
    response = await user.post("/agent/run", json=ask("openai", calls(("tool_lookup", {"key": "alpha"})), with_secret))
    assert response.json()["tool_results"][0]["content"] == "first letter of the Greek alphabet"

    wrong = mcp(emulator, protected=True, kwargs={"headers": {"Authorization": "Bearer not-the-Secret-9876"}})
    status, lines, _ = await stream(user, ask("openai", "hi", wrong))
    (failure,) = lines_of(lines, "tool_result")
    assert failure["is_error"] and "unreachable" in failure["content"]

    seen = response.text + str(lines) + captured_logs.text
    seen += " ".join(r.getMessage() for r in captured_logs.records)
    assert SECRET not in seen and "not-the-Secret-9876" not in seen


async def test_the_step_limit_ends_the_loop(user, configs, emulator, loopback_mcp, settings):
    settings.QALBY_AGENT_MAX_STEPS = 2
    text = calls(("tool_add", {"a": 1, "b": 1}), ("tool_add", {"a": 2, "b": 2}), ("tool_add", {"a": 3, "b": 3}))
    answer = (await user.post("/agent/run", json=ask("anthropic", text, mcp(emulator)))).json()
    assert answer["finish_reason"] == "max_steps"
    assert [r["content"] for r in answer["tool_results"]] == ["2"]  # the second call was not run
    assert len(emulator.recorded("anthropic")) == 2

    status, lines, _ = await stream(user, ask("anthropic", text, mcp(emulator)))
    assert lines[-1]["type"] == "done" and lines[-1]["finish_reason"] == "max_steps"
    assert len(lines_of(lines, "tool_result")) == 1


@pytest.mark.parametrize("path", ["/agent/run", "/agent/run_stream"])
async def test_a_provider_that_fails_mid_loop_hands_over_to_the_next_request(user, configs, emulator, loopback_mcp, path):
    slow = ask("openai", calls(("tool_add", {"a": 1, "b": 2}), ("tool_sleep", {"seconds": 5})), mcp(emulator))
    quick = ask("groq", calls(("tool_add", {"a": 4, "b": 4})), mcp(emulator))
    status, answer, _ = await stream(user, chain(slow, quick, timeout_per_request=1), path)
    assert status == 200
    if path == "/agent/run_stream":
        lines, answer = answer, answer[-1]
        assert lines[0]["provider_uid"] == "groq"
        # nothing of the abandoned attempt reached the client
        assert [(r["name"], r["content"]) for r in lines_of(lines, "tool_result")] == [("tool_add", "8")]
    else:
        assert answer["provider_uid"] == "groq"
        assert [(r["name"], r["content"]) for r in answer["tool_results"]] == [("tool_add", "8")]
    assert statuses(answer["attempts"]) == ["timeout", "ok"]
    assert [a["tools"] for a in answer["attempts"]] == [["tool_add", "tool_sleep"], ["tool_add"]]
    assert mcp_calls(emulator)[:2] == [("add", {"a": 1, "b": 2}), ("sleep", {"seconds": 5})]


async def test_when_every_attempt_fails_the_error_still_says_which_tools_ran(user, configs, emulator, loopback_mcp):
    slow = ask("anthropic", calls(("tool_add", {"a": 1, "b": 2}), ("tool_sleep", {"seconds": 5})), mcp(emulator))
    response = await user.post("/agent/run", json=chain(slow, timeout_per_request=0.8))
    assert response.status_code == 504
    (attempt,) = response.json()["attempts"]
    assert attempt["status"] == "timeout" and attempt["tools"] == ["tool_add", "tool_sleep"]


async def test_a_broken_stream_whose_attempt_ran_tools_is_not_restarted_unless_asked(user, configs, emulator,
                                                                                      loopback_mcp):
    # The tool turn is short (fewer events than the cut); the answer that follows is cut mid-way.
    first = ask("anthropic", calls(("tool_add", {"a": 1, "b": 2})), mcp(emulator), model="m~long40~cut12")
    second = ask("groq", "hello there")
    _status, lines, _ = await stream(user, chain(first, second))
    kinds = [line["type"] for line in lines]
    assert kinds[:3] == ["start", "tool_call", "tool_result"] and "delta" in kinds
    assert kinds[-1] == "error" and "restart" not in kinds
    assert "not restarted" in lines[-1]["detail"] and "tool_add" in lines[-1]["detail"]
    assert emulator.recorded("groq") == []

    _status, lines, _ = await stream(user, chain(first, second, restart_after_tools=True))
    kinds = [line["type"] for line in lines]
    assert "restart" in kinds and kinds[-1] == "done" and lines[-1]["provider_uid"] == "groq"
