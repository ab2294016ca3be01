import re
import zlib

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.core import signing

from providers.models import ClientKey, ProviderConfig
from providers.roles import ADMINISTRATORS, AUDITORS, ensure_roles
from providers.services import provider_config_upsert

pytestmark = pytest.mark.django_db

RAW_KEY = "sk-admin-test-Q1w2E3r4T5y6U7i8O9p0"


@pytest.fixture
def staff(client):
    ensure_roles(apps)  # the data migration's work, redone after other tests' flushes

    def login(group: str):
        user = User.objects.create_user(f"{group.lower()}-user", password="pw", is_staff=True)
        user.groups.add(Group.objects.get(name=group))
        client.force_login(user)
        return client

    return login


def test_roles_exist_with_their_permissions():
    ensure_roles(apps)
    admins = set(Group.objects.get(name=ADMINISTRATORS).permissions.values_list("codename", flat=True))
    assert {"add_providerconfig", "change_providerconfig", "view_clientkey", "delete_clientkey"} <= admins
    auditors = set(Group.objects.get(name=AUDITORS).permissions.values_list("codename", flat=True))
    assert not {p for p in auditors if "providerconfig" in p or "clientkey" in p}


def test_administrator_manages_configs_and_never_sees_the_key(staff):
    client = staff(ADMINISTRATORS)
    config, _ = provider_config_upsert(uid="prod-openai", provider="openai", api_key=RAW_KEY)

    listing = client.get("/admin/providers/providerconfig/")
    assert listing.status_code == 200
    assert b"prod-openai" in listing.content and RAW_KEY[-4:].encode() in listing.content
    assert RAW_KEY.encode() not in listing.content

    change_url = f"/admin/providers/providerconfig/{config.pk}/change/"
    page = client.get(change_url)
    assert page.status_code == 200
    assert RAW_KEY.encode() not in page.content
    assert RAW_KEY[4:-4].encode() not in page.content

    # Blank key keeps the stored one.
    saved = client.post(
        change_url,
        {"uid": "prod-openai", "provider": "openai", "api_key": "", "base_url": "http://127.0.0.1:9/v1",
         "options": "{}", "enabled": "on"},
    )
    assert saved.status_code == 302, saved.content[:2000]
    config.refresh_from_db()
    assert config.api_key == RAW_KEY and config.base_url == "http://127.0.0.1:9/v1"
    assert RAW_KEY.encode() not in client.get(change_url).content

    # A new key replaces it; bad options are refused with the option named.
    client.post(change_url, {"uid": "prod-openai", "provider": "openai", "api_key": "sk-new-key-0000000000000000",
                             "base_url": "", "options": "{}", "enabled": "on"})
    config.refresh_from_db()
    assert config.api_key == "sk-new-key-0000000000000000"
    refused = client.post(change_url, {"uid": "prod-openai", "provider": "openai", "api_key": "",
                                       "base_url": "", "options": '{"tiemout": 1}', "enabled": "on"})
    assert refused.status_code == 200 and b"tiemout" in refused.content


def test_administrator_adds_a_config_and_filters(staff):
    client = staff(ADMINISTRATORS)
    response = client.post(
        "/admin/providers/providerconfig/add/",
        {"uid": "claude", "provider": "anthropic", "api_key": RAW_KEY, "base_url": "", "options": "{}", "enabled": "on"},
    )
    assert response.status_code == 302
    assert ProviderConfig.objects.get(uid="claude").api_key == RAW_KEY
    client.get("/admin/")  # shows (and so consumes) the "was added" message, which names the row too
    row = b">claude</a>"
    assert row not in client.get("/admin/providers/providerconfig/?provider__exact=openai").content
    assert row in client.get("/admin/providers/providerconfig/?provider__exact=anthropic").content


def test_client_key_secret_is_shown_once_in_the_admin(staff):
    client = staff(ADMINISTRATORS)
    response = client.post(
        "/admin/providers/clientkey/add/", {"name": "mobile", "scopes": ["use"], "enabled": "on"}, follow=True
    )
    assert response.status_code == 200
    key = ClientKey.objects.get(name="mobile")
    messages = [str(m) for m in response.context["messages"]]
    token = next(word for m in messages for word in m.split() if word.startswith("qpk_"))
    assert token.split("_")[1] == key.prefix
    later = client.get(f"/admin/providers/clientkey/{key.pk}/change/")
    assert token.encode() not in later.content


def readable(cookie: str) -> str:
    """What anyone holding a cookie can read: Django signs a value (cookie messages) but does not encrypt it."""
    payload = cookie.split(":", 1)[0]
    try:
        data = signing.b64_decode(payload.lstrip(".").encode())
        return cookie + "\n" + (zlib.decompress(data) if payload.startswith(".") else data).decode("utf-8", "replace")
    except (ValueError, zlib.error):
        return cookie


def test_a_new_client_keys_secret_never_travels_in_a_cookie(staff):
    client = staff(ADMINISTRATORS)
    created = client.post("/admin/providers/clientkey/add/", {"name": "web", "scopes": ["use"], "enabled": "on"})
    assert created.status_code == 302
    shown = client.get(created["Location"])
    [token] = re.findall(r"qpk_[A-Za-z0-9_-]+", shown.content.decode())  # shown once, on the page after saving
    assert token.split("_")[1] == ClientKey.objects.get(name="web").prefix
    for response in (created, shown):
        for cookie in response.cookies.values():
            assert token not in readable(cookie.value), f"the secret is readable in the {cookie.key} cookie"
    assert "messages" not in client.cookies
    assert token not in client.get(created["Location"]).content.decode()  # and never again


def test_auditor_sees_nothing_of_configs_or_keys(staff):
    client = staff(AUDITORS)
    provider_config_upsert(uid="hidden", provider="openai", api_key=RAW_KEY)
    assert client.get("/admin/providers/providerconfig/").status_code == 403
    assert client.get("/admin/providers/clientkey/").status_code == 403
    index = client.get("/admin/")
    assert index.status_code == 200
    assert b"/admin/providers/providerconfig/" not in index.content
    assert b"/admin/providers/clientkey/" not in index.content
