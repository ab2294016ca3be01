"""Provider configuration endpoints, through HTTP against the live ASGI app."""

import json

import pytest
from django.db import connection

from providers.fields import decrypt
from providers.models import ProviderConfig

pytestmark = pytest.mark.django_db(transaction=True)

RAW_KEY = "sk-live-Zq8vW3nR5tY7uI9oP1aS2dF4gH6jK8lX"


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def test_create_replace_list_delete(http, make_key):
    headers = auth(await make_key("manage"))
    body = {"uid": "main-openai", "provider": "openai", "api_key": RAW_KEY, "base_url": "https://api.example.test/v1"}

    created = await http.post("/providers/config", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["uid"] == "main-openai"
    assert created.json()["api_key"] == "sk-…lX".replace("…lX", "…" + RAW_KEY[-4:])
    assert created.json()["base_url"] == "https://api.example.test/v1"

    replaced = await http.post(
        "/providers/config", json={"uid": "main-openai", "provider": "groq", "api_key": "gsk_" + "b" * 40}, headers=headers
    )
    assert replaced.status_code == 200
    assert replaced.json()["provider"] == "groq"
    assert replaced.json()["base_url"] is None  # a replace is whole: the old base_url is gone

    listed = await http.get("/providers/configs", headers=headers)
    assert listed.status_code == 200
    assert [(c["uid"], c["provider"], c["api_key"]) for c in listed.json()] == [("main-openai", "groq", "gsk…bbbb")]

    deleted = await http.delete("/providers/config/main-openai", headers=headers)
    assert deleted.status_code == 204
    assert (await http.get("/providers/configs", headers=headers)).json() == []
    missing = await http.delete("/providers/config/main-openai", headers=headers)
    assert missing.status_code == 404
    assert "main-openai" in missing.json()["detail"]


async def test_database_holds_only_ciphertext(http, make_key):
    response = await http.post(
        "/providers/config",
        json={"uid": "enc", "provider": "anthropic", "api_key": RAW_KEY},
        headers=auth(await make_key("manage")),
    )
    assert response.status_code == 201

    def raw_column():
        with connection.cursor() as cursor:
            cursor.execute("SELECT api_key FROM providers_providerconfig WHERE uid = %s", ["enc"])
            return cursor.fetchone()[0]

    from asgiref.sync import sync_to_async

    stored = await sync_to_async(raw_column)()
    assert RAW_KEY not in stored and RAW_KEY[-8:] not in stored
    assert decrypt(stored) == RAW_KEY
    assert (await ProviderConfig.objects.aget(uid="enc")).api_key == RAW_KEY


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer qpk_00000000_wrong"}, 401),
        ({"Authorization": "Bearer not-even-our-format"}, 401),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
    ],
)
async def test_requests_without_a_valid_key_are_unauthorized(http, headers, status):
    response = await http.get("/providers/configs", headers=headers)
    assert response.status_code == status
    assert "detail" in response.json()
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_a_use_key_cannot_manage_configs(http, make_key):
    response = await http.post(
        "/providers/config",
        json={"uid": "x", "provider": "openai", "api_key": RAW_KEY},
        headers=auth(await make_key("use")),
    )
    assert response.status_code == 403
    assert "manage" in response.json()["detail"]
    assert await ProviderConfig.objects.acount() == 0


async def test_disabled_and_expired_keys_are_refused(http, make_key):
    from datetime import timedelta

    from django.utils import timezone

    from providers.models import ClientKey

    expired = await make_key("manage", name="old", expires_at=timezone.now() - timedelta(seconds=1))
    assert (await http.get("/providers/configs", headers=auth(expired))).status_code == 401

    token = await make_key("manage", name="soon disabled")
    assert (await http.get("/providers/configs", headers=auth(token))).status_code == 200
    await ClientKey.objects.filter(name="soon disabled").aupdate(enabled=False)
    from providers import auth as auth_module

    auth_module.clear_cache()  # what the model signal does on save(); aupdate() bypasses signals
    assert (await http.get("/providers/configs", headers=auth(token))).status_code == 401


BAD_INPUTS = [
    ("missing uid", {"provider": "openai", "api_key": "k" * 20}, "uid"),
    ("missing api_key", {"uid": "a", "provider": "openai"}, "api_key"),
    ("missing provider", {"uid": "a", "api_key": "k" * 20}, "provider"),
    ("wrong type", {"uid": 5, "provider": "openai", "api_key": "k" * 20}, "uid"),
    ("unknown provider", {"uid": "a", "provider": "cohere", "api_key": "k" * 20}, "provider"),
    ("ftp url", {"uid": "a", "provider": "openai", "api_key": "k" * 20, "base_url": "ftp://x.test"}, "base_url"),
    ("javascript url", {"uid": "a", "provider": "openai", "api_key": "k" * 20, "base_url": "javascript:alert(1)"}, "base_url"),
    ("huge uid", {"uid": "u" * 10_000, "provider": "openai", "api_key": "k" * 20}, "uid"),
    ("uid with spaces", {"uid": "a b", "provider": "openai", "api_key": "k" * 20}, "uid"),
    ("empty key", {"uid": "a", "provider": "openai", "api_key": ""}, "api_key"),
    ("unknown option", {"uid": "a", "provider": "openai", "api_key": "k" * 20, "options": {"tiemout": 3}}, "options"),
    ("bad option value", {"uid": "a", "provider": "openai", "api_key": "k" * 20, "options": {"timeout": -1}}, "timeout"),
    ("bad hedge delay", {"uid": "a", "provider": "openai", "api_key": "k" * 20, "options": {"hedge_after": 0}},
     "hedge_after"),
    ("bad hedge word", {"uid": "a", "provider": "openai", "api_key": "k" * 20, "options": {"hedge_after": "soon"}},
     "hedge_after"),
    ("unknown field", {"uid": "a", "provider": "openai", "api_key": "k" * 20, "colour": "red"}, "colour"),
    ("options not an object", {"uid": "a", "provider": "openai", "api_key": "k" * 20, "options": [1]}, "options"),
    ("a list body", [1, 2], "body"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
async def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(http, make_key, case, body, field):
    headers = auth(await make_key("manage"))
    existing = {"uid": "a", "provider": "anthropic", "api_key": RAW_KEY}
    assert (await http.post("/providers/config", json=existing, headers=headers)).status_code == 201

    response = await http.post("/providers/config", json=body, headers=headers)
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]
    config = await ProviderConfig.objects.aget(uid="a")
    assert (config.provider, config.api_key, config.base_url) == ("anthropic", RAW_KEY, "")
    assert await ProviderConfig.objects.acount() == 1


async def test_invalid_json_is_a_400(http, make_key):
    response = await http.post(
        "/providers/config",
        content=b'{"uid": "a", ',
        headers={**auth(await make_key("manage")), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "detail" in response.json()
    assert await ProviderConfig.objects.acount() == 0


async def test_oversized_body_is_a_413(http, make_key):
    body = json.dumps({"uid": "a", "provider": "openai", "api_key": "k" * (2 * 1024 * 1024)})
    response = await http.post(
        "/providers/config", content=body, headers={**auth(await make_key("manage")), "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]

    async def chunked():
        for _ in range(3):
            yield b"x" * (1024 * 1024)

    streamed = await http.post("/providers/config", content=chunked(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert await ProviderConfig.objects.acount() == 0


async def test_wrong_method_and_unknown_path_answer_json(http, make_key):
    headers = auth(await make_key("manage"))
    wrong = await http.put("/providers/configs", headers=headers)
    assert wrong.status_code == 405
    assert wrong.json()["detail"] == "method PUT not allowed on /providers/configs: use GET"
    unknown = await http.get("/providers/nope", headers=headers)
    assert unknown.status_code == 404
    assert "detail" in unknown.json()


async def test_the_raw_key_never_leaves_the_server(http, make_key, captured_logs):
    headers = auth(await make_key("manage"))
    seen = []
    for request in [
        http.post("/providers/config", json={"uid": "s", "provider": "openai", "api_key": RAW_KEY}, headers=headers),
        http.post("/providers/config", json={"uid": "s", "provider": "openai", "api_key": RAW_KEY, "base_url": "ftp://x"}, headers=headers),
        http.post("/providers/config", json={"uid": "s", "provider": "openai", "api_key": RAW_KEY, "options": {"x": 1}}, headers=headers),
        http.get("/providers/configs", headers=headers),
        http.get("/providers/configs", headers={"Authorization": f"Bearer {RAW_KEY}"}),
        http.get("/providers/configs", headers={"Authorization": RAW_KEY}),
    ]:
        response = await request
        seen.append(response.text + json.dumps(dict(response.headers)))
    seen.append(repr(await ProviderConfig.objects.aget(uid="s")))
    seen.append(str(await ProviderConfig.objects.aget(uid="s")))
    seen.extend(record.getMessage() for record in captured_logs.records)
    for text in seen:
        assert RAW_KEY not in text
        assert RAW_KEY[4:-4] not in text
