"""Routes (issue #14): defined through the API by a `manage` key, used by name on the chat endpoints,
restricted per client key, recorded in request logs. Real SDKs against the emulator."""

import pytest
from asgiref.sync import sync_to_async

from providers.models import RequestLog
from providers.requestlogs.batching import writer
from tests.agent.helpers import statuses, stream, text_of

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def manager(http, make_key):
    import httpx

    async with httpx.AsyncClient(base_url=str(http.base_url), timeout=10,
                                 headers={"Authorization": f"Bearer {await make_key('manage')}"}) as client:
        yield client


def route(name="assist", *entries, **fields):
    entries = entries or ({"provider_uid": "openai", "model": "m~e503"},
                          {"provider_uid": "anthropic", "model": "claude-x", "settings": {"gen_config": {"temperature": 0.3}}})
    return {"name": name, "kind": "chat", "entries": list(entries), **fields}


async def test_a_route_is_created_replaced_listed_and_deleted(manager, configs):
    created = await manager.post("/routes", json=route())
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["version"] == 1 and [e["provider_uid"] for e in body["entries"]] == ["openai", "anthropic"]
    replaced = await manager.post("/routes", json=route("assist", {"provider_uid": "groq", "model": "g"},
                                                        strategy="parallel", hedge_after=1.5))
    assert replaced.status_code == 200
    assert replaced.json()["version"] == 2 and replaced.json()["strategy"] == "parallel"
    assert replaced.json()["hedge_after"] == "1.5" and len(replaced.json()["entries"]) == 1
    listed = (await manager.get("/routes")).json()
    assert [r["name"] for r in listed] == ["assist"]
    assert (await manager.delete("/routes/assist")).status_code == 204
    gone = await manager.delete("/routes/assist")
    assert gone.status_code == 404 and "assist" in gone.json()["detail"]


@pytest.mark.parametrize(("entry", "status", "words"), [
    ({"provider_uid": "elevenlabs", "model": "m"}, 400, "cannot serve a chat route"),
    ({"provider_uid": "nope", "model": "m"}, 404, "unknown provider_uid 'nope'"),
    ({"provider_uid": "openai", "model": "m", "settings": {"gen_config": {"temperature": 9}}}, 400, "temperature"),
    ({"provider_uid": "openai", "model": "m", "settings": {"voice": "alloy"}}, 400, "not a chat entry setting: voice"),
    ({"provider_uid": "openai", "model": "../x"}, 400, "model"),
])
async def test_bad_entries_are_refused_and_change_nothing(manager, configs, entry, status, words):
    assert (await manager.post("/routes", json=route("assist", {"provider_uid": "openai", "model": "ok"}))).status_code == 201
    response = await manager.post("/routes", json=route("assist", {"provider_uid": "groq", "model": "g"}, entry))
    assert response.status_code == status and words in response.json()["detail"], response.text
    (kept,) = (await manager.get("/routes")).json()
    assert kept["version"] == 1 and [e["model"] for e in kept["entries"]] == ["ok"]


async def test_only_manage_keys_manage_routes(user, configs):
    response = await user.post("/routes", json=route())
    assert response.status_code == 403


async def test_a_route_runs_its_chain_with_each_entrys_settings(user, manager, configs, emulator):
    assert (await manager.post("/routes", json=route())).status_code == 201
    response = await user.post("/agent/run", json={"route": "assist", "messages": HELLO})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["provider_uid"] == "anthropic" and statuses(answer["attempts"]) == ["error", "ok"]
    assert "temperature=0.3" in answer["output"]  # the entry's own setting reached the provider
    # The request's gen_config overrides the entry's, field by field.
    answer = (await user.post("/agent/run", json={"route": "assist", "messages": HELLO,
                                                  "gen_config": {"max_tokens": 40}})).json()
    assert "temperature=0.3" in answer["output"] and "max_tokens=40" in answer["output"]
    answer = (await user.post("/agent/run", json={"route": "assist", "messages": HELLO,
                                                  "gen_config": {"temperature": 0.9}})).json()
    assert "temperature=0.9" in answer["output"]
    # Streams too.
    status, lines, _ = await stream(user, {"route": "assist", "messages": HELLO})
    assert status == 200 and lines[0]["provider_uid"] == "anthropic" and lines[-1]["type"] == "done"
    assert text_of(lines).startswith("hello there")


async def test_a_change_is_used_by_the_next_request_and_logged_with_its_version(user, manager, configs, settings):
    settings.QALBY_CONFIG_TTL = 3600  # the change must arrive by invalidation, not by expiry
    await manager.post("/routes", json=route("assist", {"provider_uid": "openai", "model": "first"}))
    assert (await user.post("/agent/run", json={"route": "assist", "messages": HELLO})).json()["model"] == "first"
    await manager.post("/routes", json=route("assist", {"provider_uid": "groq", "model": "second"}))
    answer = (await user.post("/agent/run", json={"route": "assist", "messages": HELLO})).json()
    assert (answer["provider_uid"], answer["model"]) == ("groq", "second")
    assert await sync_to_async(writer.flush)(timeout=10)
    logged = await sync_to_async(lambda: list(RequestLog.objects.filter(route="assist")
                                              .order_by("created_at").values_list("route_version", "model")))()
    assert logged == [(1, "first"), (2, "second")]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"route": "nope", "messages": HELLO}, 404, "no chat route named 'nope'"),
    ({"route": "assist", "messages": []}, 400, "messages"),
    ({"route": "assist", "messages": HELLO, "requests": []}, 400, "requests"),
    ({"route": "a b", "messages": HELLO}, 400, "route"),
])
async def test_bad_route_requests_are_4xx(user, manager, configs, body, status, words):
    await manager.post("/routes", json=route())
    response = await user.post("/agent/run", json=body)
    assert response.status_code == status and words in response.json()["detail"], response.text


async def test_a_disabled_route_is_refused(user, manager, configs):
    await manager.post("/routes", json=route(enabled=False))
    response = await user.post("/agent/run", json={"route": "assist", "messages": HELLO})
    assert response.status_code == 400 and "disabled" in response.json()["detail"]


async def test_keys_may_be_restricted_to_routes_and_kept_from_naming_providers(http, manager, configs, make_key):
    await manager.post("/routes", json=route("assist"))
    await manager.post("/routes", json=route("other", {"provider_uid": "groq", "model": "g"}))
    token = await make_key("use", routes=["assist"], direct=False)
    headers = {"Authorization": f"Bearer {token}"}
    ok = await http.post("/agent/run", json={"route": "assist", "messages": HELLO}, headers=headers)
    assert ok.status_code == 200
    refused = await http.post("/agent/run", json={"route": "other", "messages": HELLO}, headers=headers)
    assert refused.status_code == 403 and "'other'" in refused.json()["detail"]
    direct = await http.post("/agent/run", json={"provider_uid": "openai", "model": "m", "messages": HELLO},
                             headers=headers)
    assert direct.status_code == 403 and "route" in direct.json()["detail"]


async def test_a_config_a_route_uses_cannot_be_deleted_until_taken_out(manager, configs):
    await manager.post("/routes", json=route())
    refused = await manager.delete("/providers/config/anthropic")
    assert refused.status_code == 409 and "assist" in refused.json()["detail"], refused.text
    assert (await manager.post("/routes", json=route("assist", {"provider_uid": "openai", "model": "m"}))).status_code == 200
    assert (await manager.delete("/providers/config/anthropic")).status_code == 204
