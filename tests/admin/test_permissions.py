"""Who may do what in the admin, through its real URLs: staff without a role see nothing of configs and keys,
Auditors read request logs and change nothing, and nobody gets in without being staff, whatever their groups."""

import re
import secrets

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, User
from django.utils import timezone

from providers.models import Attempt, ClientKey, ProviderConfig, RequestLog
from providers.roles import ADMINISTRATORS, AUDITORS, ensure_roles
from providers.services import provider_config_upsert

pytestmark = pytest.mark.django_db

CONFIGS = "/admin/providers/providerconfig/"
KEYS = "/admin/providers/clientkey/"
LOGS = "/admin/providers/requestlog/"


@pytest.fixture
def login(client):
    ensure_roles(apps)  # the migrations' groups, redone after other tests' flushes

    def as_user(*groups, is_staff=True):
        user = User.objects.create_user(f"user-{secrets.token_hex(3)}", password="pw", is_staff=is_staff)
        user.groups.add(*Group.objects.filter(name__in=groups))
        client.force_login(user)
        return client, user

    return as_user


@pytest.fixture
def rows():
    config, _ = provider_config_upsert(uid="prod-openai", provider="openai", api_key="sk-perm-test-1234567890")
    key = ClientKey.objects.create(name="mobile", prefix="abcd1234", secret_hash="0" * 64, scopes=["use"])
    log = RequestLog.objects.create(request_id="req-perm-1", created_at=timezone.now(), endpoint="POST /agent/run",
                                    status=200, outcome="ok", provider_uid="prod-openai", model="gpt")
    Attempt.objects.create(request_log=log, order=0, provider_uid="prod-openai", model="gpt", outcome="ok")
    return config, key, log


def snapshot():
    """Every stored value a refused request could have touched (updated_at included, so a no-op save shows)."""
    return [list(model.objects.order_by("pk").values()) for model in (ProviderConfig, ClientKey, RequestLog, Attempt)]


def index_models(client) -> set[str]:
    """The models the admin index links to, as "app/model"."""
    page = client.get("/admin/")
    assert page.status_code == 200
    return set(re.findall(r'href="/admin/(\w+/\w+)/"', page.content.decode()))


def config_form(**fields):
    return {"uid": "prod-openai", "provider": "openai", "api_key": "", "base_url": "http://127.0.0.1:9/v1",
            "options": "{}", "enabled": "on", **fields}


def key_form(**fields):
    return {"name": "mobile", "scopes": ["use", "manage"], "routes": "[]", "enabled": "on", **fields}


def test_staff_without_a_role_is_refused_every_config_and_key_page(login, rows):
    config, key, _ = rows
    client, _ = login()
    before = snapshot()
    for base, obj, form in ((CONFIGS, config, config_form(uid="stolen")), (KEYS, key, key_form(name="stolen"))):
        # Django answers 403 (not a login redirect) to a staff user lacking the model's permissions.
        for page in ("", "add/", f"{obj.pk}/change/", f"{obj.pk}/delete/", f"{obj.pk}/history/"):
            assert client.get(base + page).status_code == 403, base + page
        for page, data in (("add/", form), (f"{obj.pk}/change/", form), (f"{obj.pk}/delete/", {"post": "yes"})):
            assert client.post(base + page, data).status_code == 403, base + page
    assert snapshot() == before
    assert index_models(client) == set()
    assert client.get("/admin/providers/").status_code == 404  # an app with nothing to show does not exist


def test_an_auditor_reads_request_logs(login, rows):
    _, _, log = rows
    client, _ = login(AUDITORS)
    assert b"req-perm-1" in client.get(LOGS).content
    page = client.get(f"{LOGS}{log.pk}/change/")
    assert page.status_code == 200 and b"Attempts" in page.content
    assert b'name="_save"' not in page.content
    assert client.get(LOGS + "export.csv").status_code == 200
    assert client.get(LOGS + "overview/").status_code == 200


def test_an_auditor_changes_nothing_by_post(login, rows):
    config, key, log = rows
    client, _ = login(AUDITORS)
    before = snapshot()
    refused = [
        (f"{LOGS}add/", {"request_id": "forged", "endpoint": "POST /agent/run", "status": 200}),
        (f"{LOGS}{log.pk}/change/", {"status": 500, "error": "forged"}),
        (f"{LOGS}{log.pk}/delete/", {"post": "yes"}),
        (f"{CONFIGS}add/", config_form(uid="forged", api_key="sk-forged-000000000000")),
        (f"{CONFIGS}{config.pk}/change/", config_form(enabled="")),
        (f"{CONFIGS}{config.pk}/delete/", {"post": "yes"}),
        (f"{KEYS}add/", key_form(name="forged")),
        (f"{KEYS}{key.pk}/change/", key_form(enabled="")),
        (f"{KEYS}{key.pk}/delete/", {"post": "yes"}),
    ]
    for url, data in refused:
        assert client.post(url, data).status_code == 403, url
    # The bulk delete, as the list's form and then its confirmation page send it: no delete permission means
    # no such action, so Django just shows the list again: no confirmation page, nothing deleted.
    for data in ({"action": "delete_selected", "_selected_action": [log.pk], "index": "0"},
                 {"action": "delete_selected", "_selected_action": [log.pk], "post": "yes"}):
        response = client.post(LOGS, data)
        assert response.status_code == 200, data
        assert [t.name for t in response.templates][0] == "admin/providers/requestlog/change_list.html", data
    assert snapshot() == before


@pytest.mark.parametrize("group", [AUDITORS, ADMINISTRATORS])
def test_a_group_without_staff_status_does_not_open_the_admin(login, rows, group):
    config, _, log = rows
    client, user = login(group, is_staff=False)
    assert user.has_perm("providers.view_requestlog")  # the group grants it: only is_staff keeps them out
    before = snapshot()
    for url in ("/admin/", "/admin/providers/", LOGS, f"{LOGS}{log.pk}/change/", LOGS + "export.csv",
                LOGS + "overview/", CONFIGS, f"{CONFIGS}{config.pk}/change/", KEYS):
        response = client.get(url)
        assert (response.status_code, response.get("Location")) == (302, f"/admin/login/?next={url}"), url
    for url, data in ((f"{CONFIGS}add/", config_form(uid="forged", api_key="sk-forged-000000000000")),
                      (f"{CONFIGS}{config.pk}/delete/", {"post": "yes"})):
        assert client.post(url, data)["Location"] == f"/admin/login/?next={url}"
    assert snapshot() == before
    assert b"but are not authorized to access this page" in client.get("/admin/login/").content


@pytest.mark.parametrize(("groups", "models"), [
    ((AUDITORS,), {"providers/requestlog"}),
    # Administrators manage the gateway, not people: no users or groups, so they cannot grant themselves more.
    ((ADMINISTRATORS,), {"providers/providerconfig", "providers/clientkey", "providers/route", "providers/requestlog"}),
    ((AUDITORS, ADMINISTRATORS), {"providers/providerconfig", "providers/clientkey", "providers/route",
                                  "providers/requestlog"}),
])
def test_each_role_sees_exactly_its_models_in_the_admin_index(login, groups, models):
    client, _ = login(*groups)
    assert index_models(client) == models
