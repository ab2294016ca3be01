"""Bad input to the agent endpoints: a clear 400 naming the field, and nothing reaches a provider."""

import pytest

from tests.agent.helpers import chain, single

pytestmark = pytest.mark.django_db(transaction=True)

BAD = [
    ("no messages", {"provider_uid": "openai", "model": "m", "messages": []}, "messages"),
    ("no model", {"provider_uid": "openai", "messages": [{"role": "user", "content": "x"}]}, "model"),
    ("bad role", single("openai") | {"messages": [{"role": "robot", "content": "x"}]}, "role"),
    ("only system", single("openai") | {"messages": [{"role": "system", "content": "x"}]}, "messages"),
    ("unknown gen field", single("openai", gen_config={"temprature": 1}), "temprature"),
    ("temperature too high", single("openai", gen_config={"temperature": 9}), "temperature"),
    ("negative max_tokens", single("openai", gen_config={"max_tokens": -1}), "max_tokens"),
    ("bad base64", single("openai") | {"messages": [{"role": "user", "content": "%%%", "mime_type": "image/png"}]}, "base64"),
    ("bad mime", single("openai") | {"messages": [{"role": "user", "content": "aGk=", "mime_type": "png"}]}, "mime_type"),
    ("binary system", single("openai") | {"messages": [{"role": "system", "content": "aGk=", "mime_type": "image/png"}]}, "system"),
    ("unknown top field", single("openai", colour="red"), "colour"),
    ("empty chain", chain(), "requests"),
    ("bad strategy", chain(single("openai"), strategy="random"), "strategy"),
    ("zero timeout", chain(single("openai"), timeout_per_request=0), "timeout_per_request"),
    ("string timeout", chain(single("openai"), timeout_per_request="soon"), "timeout_per_request"),
    ("too many", chain(*[single("openai")] * 11), "requests"),
    ("not an object", [1, 2, 3], "body"),
    ("unknown tool kind", single("openai", tools=[{"kind": "shell"}]), "tools"),
]


@pytest.mark.parametrize("path", ["/agent/run", "/agent/run_stream"])
@pytest.mark.parametrize(("case", "body", "word"), BAD, ids=[c[0] for c in BAD])
async def test_bad_input_is_a_400_and_reaches_no_provider(user, configs, emulator, path, case, body, word):
    response = await user.post(path, json=body)
    assert response.status_code == 400, response.text
    assert word in response.json()["detail"]
    assert emulator.recorded() == []


async def test_invalid_json_and_wrong_method(user, configs):
    response = await user.post("/agent/run", content=b"{nope", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "detail" in response.json()
    assert (await user.get("/agent/run")).status_code == 405


async def test_agent_endpoints_need_a_use_key(http, make_key, configs):
    assert (await http.post("/agent/run", json=single("openai"))).status_code == 401
    manage_only = {"Authorization": f"Bearer {await make_key('manage')}"}
    response = await http.post("/agent/run", json=single("openai"), headers=manage_only)
    assert response.status_code == 403


async def test_a_config_that_cannot_chat_is_refused(user, configs, emulator):
    if "elevenlabs" not in emulator.base_urls:
        pytest.skip("no elevenlabs emulator")
    response = await user.post("/agent/run", json=single("elevenlabs"))
    assert response.status_code == 400
    assert "cannot chat" in response.json()["detail"]
