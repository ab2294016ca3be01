import pytest
from django.core.management import CommandError, call_command

from providers.models import ClientKey

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_api_key_prints_a_working_key_once(capsys):
    call_command("create_api_key", "backend", "--scope", "use", "--scope", "manage")
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("qpk_")
    key = ClientKey.objects.get(name="backend")
    assert sorted(key.scopes) == ["manage", "use"]
    assert token not in key.secret_hash and key.prefix in token
    assert "shown once" in out.err


async def test_the_printed_key_authenticates(http, capsys):
    from asgiref.sync import sync_to_async

    await sync_to_async(call_command)("create_api_key", "ops", "--scope", "manage")
    token = capsys.readouterr().out.strip()
    response = await http.get("/providers/configs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_create_api_key_needs_a_valid_scope():
    with pytest.raises(CommandError):
        call_command("create_api_key", "x", "--scope", "everything")
    assert not ClientKey.objects.exists()


def test_create_api_key_may_restrict_a_key_to_routes(capsys):
    call_command("create_api_key", "kiosk", "--scope", "use", "--route", "assist", "--route", "voice", "--routes-only")
    key = ClientKey.objects.get(name="kiosk")
    assert key.routes == ["assist", "voice"] and key.direct is False
    call_command("create_api_key", "backend", "--scope", "use")
    key = ClientKey.objects.get(name="backend")
    assert key.routes == [] and key.direct is True
