import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection

from providers.fields import decrypt
from providers.models import ProviderConfig
from providers.services import provider_config_upsert

pytestmark = pytest.mark.django_db


def raw_ciphertext(uid: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM providers_providerconfig WHERE uid = %s", [uid])
        return cursor.fetchone()[0]


def test_rotation_reencrypts_with_the_newest_key(settings, capsys):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.QALBY_ENCRYPTION_KEYS = [old]
    provider_config_upsert(uid="a", provider="openai", api_key="sk-first-secret-value-1234")
    provider_config_upsert(uid="b", provider="groq", api_key="gsk_second_secret_value_5678")
    before = raw_ciphertext("a")
    Fernet(old.encode()).decrypt(before.encode())

    settings.QALBY_ENCRYPTION_KEYS = [new, old]
    call_command("rotate_encryption_keys")
    assert "Re-encrypted 2" in capsys.readouterr().out

    after = raw_ciphertext("a")
    assert after != before
    assert Fernet(new.encode()).decrypt(after.encode()) == b"sk-first-secret-value-1234"

    settings.QALBY_ENCRYPTION_KEYS = [new]  # the old key is gone: everything still decrypts
    assert {c.uid: c.api_key for c in ProviderConfig.objects.all()} == {
        "a": "sk-first-secret-value-1234",
        "b": "gsk_second_secret_value_5678",
    }


def test_old_keys_keep_decrypting_until_rotation(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.QALBY_ENCRYPTION_KEYS = [old]
    provider_config_upsert(uid="a", provider="openai", api_key="sk-kept-secret-value-1234")
    settings.QALBY_ENCRYPTION_KEYS = [new, old]
    assert ProviderConfig.objects.get(uid="a").api_key == "sk-kept-secret-value-1234"
    # New writes use the newest key.
    provider_config_upsert(uid="c", provider="openai", api_key="sk-new-secret-value-9999")
    assert Fernet(new.encode()).decrypt(raw_ciphertext("c").encode()) == b"sk-new-secret-value-9999"


def test_rotation_with_a_missing_key_changes_nothing(settings):
    old, unrelated = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.QALBY_ENCRYPTION_KEYS = [old]
    provider_config_upsert(uid="a", provider="openai", api_key="sk-some-secret-value-1234")
    before = raw_ciphertext("a")
    settings.QALBY_ENCRYPTION_KEYS = [unrelated]
    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("rotate_encryption_keys")
    assert raw_ciphertext("a") == before
    settings.QALBY_ENCRYPTION_KEYS = [old]
    assert decrypt(before) == "sk-some-secret-value-1234"


def test_a_key_no_configured_key_decrypts_is_reported_not_a_crash(settings, client):
    from django.contrib.auth.models import User

    old, unrelated = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.QALBY_ENCRYPTION_KEYS = [old]
    provider_config_upsert(uid="lost", provider="openai", api_key="sk-some-secret-value-1234")
    settings.QALBY_ENCRYPTION_KEYS = [unrelated]  # e.g. a replica started with another key list
    config = ProviderConfig.objects.get(uid="lost")
    assert config.api_key == "" and "cannot be decrypted" in config.masked_key
    client.force_login(User.objects.create_superuser("root", password="pw"))
    assert client.get("/admin/providers/providerconfig/").status_code == 200
    page = client.post(f"/admin/providers/providerconfig/{config.pk}/change/",
                       {"uid": "lost", "provider": "openai", "api_key": "", "base_url": "", "options": "{}"})
    assert page.status_code == 200 and b"cannot be decrypted" in page.content
