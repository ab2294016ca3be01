"""Routes in the admin: Administrators create them with inline entries, reorder them, see validation
errors on the entry; Auditors see nothing of them."""

import pytest

from providers.models import Route
from providers.roles import ADMINISTRATORS, AUDITORS
from providers.services import provider_config_upsert
from tests.test_admin import staff  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_as(staff):  # noqa: F811
    for uid, provider in (("main", "openai"), ("backup", "anthropic"), ("voice", "elevenlabs")):
        provider_config_upsert(uid=uid, provider=provider, api_key="sk-test-123456789")
    return staff


def form(entries, **fields):
    from providers.models import ProviderConfig

    data = {"name": "assist", "kind": "chat", "strategy": "sequential", "hedge_after": "", "on_stream_failure": "",
            "enabled": "on", "entries-TOTAL_FORMS": str(len(entries)), "entries-INITIAL_FORMS": "0",
            "entries-MIN_NUM_FORMS": "0", "entries-MAX_NUM_FORMS": "1000", **fields}
    for i, (position, uid, model) in enumerate(entries):
        data.update({f"entries-{i}-position": str(position), f"entries-{i}-model": model,
                     f"entries-{i}-config": str(ProviderConfig.objects.get(uid=uid).pk), f"entries-{i}-settings": "{}"})
    return data


def test_an_administrator_creates_a_route_with_its_entries_in_order(admin_as):
    client = admin_as(ADMINISTRATORS)
    response = client.post("/admin/providers/route/add/", form([(2, "backup", "claude-x"), (1, "main", "gpt")]))
    assert response.status_code == 302, response.content.decode()[:2000]
    route = Route.objects.get(name="assist")
    assert [(e.config.uid, e.model) for e in route.entries.order_by("position")] == [("main", "gpt"), ("backup", "claude-x")]
    page = client.get("/admin/providers/route/").content.decode()
    assert "main/gpt → backup/claude-x" in page


def test_an_entry_whose_provider_cannot_serve_the_kind_is_shown_as_an_error(admin_as):
    client = admin_as(ADMINISTRATORS)
    response = client.post("/admin/providers/route/add/", form([(1, "voice", "eleven_v2")]))
    assert response.status_code == 200
    assert "cannot serve a chat route" in response.content.decode()
    assert not Route.objects.exists()


def test_a_disabled_config_is_flagged_and_edits_bump_the_version(admin_as):
    client = admin_as(ADMINISTRATORS)
    client.post("/admin/providers/route/add/", form([(1, "main", "gpt")]))
    provider_config_upsert(uid="main", provider="openai", api_key="sk-test-123456789", enabled=False)
    route = Route.objects.get(name="assist")
    page = client.get(f"/admin/providers/route/{route.pk}/change/").content.decode()
    assert "DISABLED" in page
    assert "(disabled)" in client.get("/admin/providers/route/").content.decode()
    entry = route.entries.get()
    data = form([], **{"entries-TOTAL_FORMS": "1", "entries-INITIAL_FORMS": "1", "entries-0-id": str(entry.pk),
                       "entries-0-route": str(route.pk), "entries-0-position": "1",
                       "entries-0-config": str(entry.config_id), "entries-0-model": "gpt-2", "entries-0-settings": "{}"})
    assert client.post(f"/admin/providers/route/{route.pk}/change/", data).status_code == 302
    route.refresh_from_db()
    assert route.version == 2 and route.entries.get().model == "gpt-2"


def test_auditors_see_nothing_of_routes(admin_as):
    client = admin_as(AUDITORS)
    assert client.get("/admin/providers/route/").status_code == 403


def test_a_config_a_route_uses_is_not_deleted_from_the_admin(admin_as):
    from providers.models import ProviderConfig

    client = admin_as(ADMINISTRATORS)
    client.post("/admin/providers/route/add/", form([(1, "main", "gpt")]))
    config = ProviderConfig.objects.get(uid="main")
    response = client.post(f"/admin/providers/providerconfig/{config.pk}/delete/", {"post": "yes"})
    assert response.status_code == 200 and "protected" in response.content.decode()
    assert ProviderConfig.objects.filter(uid="main").exists()
