"""Errors that say what to do: the valid choices, the field to fix, the endpoint to use instead, the
configs that exist, and always the request id to quote. Through HTTP against the live app."""

import pytest

from providers.models import ProviderConfig

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["request_id"] == response.headers["X-Request-ID"]
    if status == 400:
        assert body["errors"] and all({"field", "message"} <= set(e) for e in body["errors"])
    return body


async def test_an_unknown_provider_lists_the_valid_ones_and_guesses_the_vendor_name(http, make_key):
    headers = auth(await make_key("manage"))
    response = await http.post("/providers/config", headers=headers,
                               json={"uid": "g", "provider": "gemini", "api_key": "AIza-x"})
    body = assert_error(response, 400)
    assert body["errors"] == [{"field": "provider", "message": "'gemini' is not a provider; one of: openai, "
                                                               "anthropic, google, groq, elevenlabs (did you mean 'google'?)"}]
    assert not body["detail"].startswith("Value error")
    assert await ProviderConfig.objects.acount() == 0


async def test_every_400_has_an_errors_list(http, make_key):
    headers = auth(await make_key("manage", "use"))
    refusals = [
        # the model's own validation (not the request shape's)
        await http.post("/providers/config", headers=headers,
                        json={"uid": "o", "provider": "openai", "api_key": "sk-x", "base_url": "ftp://x"}),
        # a body that is not JSON
        await http.post("/agent/run", headers={**headers, "Content-Type": "application/json"}, content=b"{bad"),
        # a field the shape does not have
        await http.post("/agent/run", headers=headers, json={**CHAT, "provider_uid": "x", "temperature": 1}),
    ]
    fields = [assert_error(response, 400)["errors"][0]["field"] for response in refusals]
    assert fields == ["base_url", "body", "temperature"]


async def test_json_sent_to_the_multipart_upload_points_to_the_json_twin(user):
    response = await user.post("/audio/transcribe", json={"provider_uid": "openai", "model": "whisper-1"})
    body = assert_error(response, 415)
    assert "multipart/form-data" in body["detail"] and "/audio/transcribe_json" in body["detail"]
    assert "Field required" not in body["detail"]


async def test_a_form_without_its_fields_still_names_them(user):
    response = await user.post("/audio/transcribe", files={"file": ("a.wav", b"RIFF")})
    (error,) = assert_error(response, 400)["errors"]
    assert error == {"field": "body", "message": "send provider_uid and model, or route"}


async def test_an_unknown_provider_uid_lists_the_configured_ones_to_a_manage_key(http, make_key, configs):
    body = {**CHAT, "provider_uid": "opneai"}
    managing = assert_error(await http.post("/agent/run", json=body, headers=auth(await make_key("use", "manage"))), 404)
    assert managing["detail"] == ("unknown provider_uid 'opneai'; the configured ones: "
                                  "anthropic, elevenlabs, google, groq, openai")
    # A key that may only use configs is told where the list is, not the list.
    using = assert_error(await http.post("/agent/run", json=body, headers=auth(await make_key("use"))), 404)
    assert "configured ones" in using["detail"] and "openai," not in using["detail"]
    assert "GET /providers/configs" in using["detail"]


async def test_an_unknown_provider_uid_with_no_config_says_how_to_make_one(http, make_key):
    response = await http.post("/agent/run", json={**CHAT, "provider_uid": "x"}, headers=auth(await make_key("use", "manage")))
    assert "POST /providers/config" in assert_error(response, 404)["detail"]


async def test_a_provider_that_cannot_do_it_is_named_with_its_article_and_the_ones_that_can(user, configs):
    response = await user.post("/audio/transcribe_json", json={
        "provider_uid": "anthropic", "model": "claude", "file": ["a.wav", "UklGRg==", "audio/wav"]})
    detail = assert_error(response, 400)["detail"]
    assert "'anthropic' is an Anthropic config, which cannot transcribe audio" in detail
    assert "(the providers that can: openai, groq, elevenlabs)" in detail


async def test_unknown_paths_and_wrong_methods_say_what_exists(http, make_key):
    headers = auth(await make_key("manage"))
    wrong = await http.put("/providers/configs", headers=headers)
    assert assert_error(wrong, 405)["detail"] == "method PUT not allowed on /providers/configs: use GET"
    assert wrong.headers["Allow"] == "GET"
    unknown = assert_error(await http.get("/agent/runn", headers=headers), 404)
    assert "/docs" in unknown["detail"]


async def test_errors_refused_below_django_carry_a_request_id_too(http):
    response = await http.get("/healthz?x=%00")
    body = assert_error(response, 400)
    assert body["errors"][0]["field"] == "url"
    too_big = await http.post("/agent/run", content=b"x" * (2 << 20), headers={"Content-Type": "application/json"})
    assert assert_error(too_big, 413)["detail"].startswith("request body too large")
