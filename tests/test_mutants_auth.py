"""Client keys and their scopes (providers/auth.py), through its public calls against the real database:
which tokens are keys at all, 401 versus 403, and how long the in-process cache may trust a key that
changed behind its back. Written for the mutation check (scripts/mutation.py); the HTTP side of the
same rules is in tests/test_providers_api.py, the cross-process one in tests/test_client_key_cache.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import RequestFactory
from django.utils import timezone

from providers import auth
from providers.exceptions import MissingScope
from providers.models import ClientKey
from providers.services import client_key_create

pytestmark = pytest.mark.django_db(transaction=True)

TTL = 0.8  # CLIENT_KEY_CACHE_SECONDS in these tests


@pytest.fixture(autouse=True)
def fresh_cache(settings):
    settings.CLIENT_KEY_CACHE_SECONDS = TTL
    auth.clear_cache()
    auth._last_touched.clear()  # the once-a-minute memory outlives the test database, whose key ids repeat
    yield
    auth.clear_cache()


async def new_key(*scopes: str, name: str = "k", **kwargs) -> tuple[ClientKey, str]:
    return await sync_to_async(client_key_create)(name=name, scopes=list(scopes), **kwargs)


async def behind_its_back(key: ClientKey, **fields) -> None:
    """Change the key as another replica would: no signal here, so this process's cache is not told."""
    await ClientKey.objects.filter(pk=key.pk).aupdate(**fields)


def request(authorization: str | None = None):
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    return RequestFactory().get("/", **headers)


# ---- tokens and scopes ---------------------------------------------------------------------------


def test_a_new_token_is_stored_as_its_prefix_and_digest():
    token, prefix, digest = auth.make_token()
    assert token.startswith(f"qpk_{prefix}_") and len(prefix) == 8 and len(token) > 40
    assert digest == auth.hash_token(token) and len(digest) == 64 and digest != auth.hash_token(token + "x")


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer qpk_a_b", "qpk_a_b"),
    ("bearer   qpk_a_b  ", "qpk_a_b"),
    ("BEARER qpk_a_b", "qpk_a_b"),
    ("Bearer ", None),
    ("Bearer", None),
    ("Basic qpk_a_b", None),
    ("qpk_a_b", None),
    (None, None),
])
def test_the_bearer_token_of_a_request(header, token):
    assert auth.bearer_token(request(header)) == token


async def test_a_key_with_the_scope_is_let_in_as_its_principal():
    key, token = await new_key("use", "manage", name="both", routes=["r1"], direct=False)
    principal = await auth.ClientKeyAuth("manage").authenticate(request(), token)
    assert principal == auth.Principal(key.pk, "both", key.prefix, frozenset({"use", "manage"}), None,
                                       frozenset({"r1"}), False)
    assert await auth.ClientKeyAuth("use")(request(f"Bearer {token}")) == principal


async def test_a_key_without_the_scope_is_refused_naming_it():
    _key, token = await new_key("use")
    with pytest.raises(MissingScope) as missing:
        await auth.ClientKeyAuth("manage").authenticate(request(), token)
    assert str(missing.value) == "this API key lacks the 'manage' scope"


def test_no_token_is_no_principal_and_an_unknown_scope_is_a_programming_error():
    assert auth.ClientKeyAuth("use")(request()) is None
    with pytest.raises(ValueError, match="unknown scope 'admin' \\(one of use, manage\\)"):
        auth.ClientKeyAuth("admin")


@pytest.mark.parametrize("shape", ["{p}", "qpk_{p}", "qpk__{s}", "qpk_{p}_", "xpk_{p}_{s}", "{p}_{s}", "_{p}_{s}"])
async def test_tokens_not_shaped_like_a_key_are_refused(shape):
    key, token = await new_key("use")
    _qpk, prefix, secret = token.split("_", 2)
    assert await auth.authenticate(shape.format(p=prefix, s=secret)) is None


async def test_a_secret_with_underscores_is_one_secret():
    token = "qpk_abcd1234_se_cr_et"
    await ClientKey.objects.acreate(name="u", prefix="abcd1234", secret_hash=auth.hash_token(token), scopes=["use"])
    assert (await auth.authenticate(token)).name == "u"
    assert await auth.authenticate("qpk_abcd1234_se_cr_eT") is None


async def test_a_disabled_an_unknown_and_an_expired_key_are_refused():
    _soon, soon = await new_key("use", name="soon", expires_at=timezone.now() + timedelta(seconds=0.5))
    assert await auth.authenticate(soon) is not None
    key, token = await new_key("use")
    await behind_its_back(key, enabled=False)
    assert await auth.authenticate(token) is None
    assert await auth.authenticate("qpk_00000000_nothing") is None
    await asyncio.sleep(0.55)
    assert await auth.authenticate(soon) is None  # expiry is checked on a cached key too


# ---- the cache -----------------------------------------------------------------------------------


async def test_a_cached_key_is_trusted_within_the_cache_time_and_not_after():
    key, token = await new_key("use")
    assert await auth.authenticate(token) is not None
    await behind_its_back(key, enabled=False)
    assert await auth.authenticate(token) is not None  # fresh enough: the request path made no query
    await asyncio.sleep(TTL + 0.05)
    assert await auth.authenticate(token) is None


async def test_a_busy_key_is_re_read_in_the_background_past_half_its_cache_time():
    key, token = await new_key("use", name="before")
    assert (await auth.authenticate(token)).name == "before"
    await behind_its_back(key, name="after")
    await asyncio.sleep(TTL / 2 + 0.05)
    assert (await auth.authenticate(token)).name == "before"  # answered from the cache, re-read behind it
    await asyncio.sleep(0.1)
    assert (await auth.authenticate(token)).name == "after"
    await behind_its_back(key, enabled=False)
    await asyncio.sleep(TTL / 2 + 0.05)
    await auth.authenticate(token)  # starts the re-read that finds it disabled
    await asyncio.sleep(0.1)
    assert await auth.authenticate(token) is None  # well within TTL of the last re-read


async def test_a_key_whose_secret_was_replaced_is_dropped_by_the_re_read():
    key, token = await new_key("use")
    assert await auth.authenticate(token) is not None
    await behind_its_back(key, secret_hash=auth.hash_token("qpk_other_token"))
    await asyncio.sleep(TTL / 2 + 0.05)
    await auth.authenticate(token)
    await asyncio.sleep(0.1)
    assert await auth.authenticate(token) is None


async def test_a_key_is_not_re_read_before_half_its_cache_time():
    key, token = await new_key("use", name="before")
    await auth.authenticate(token)
    await behind_its_back(key, name="after")
    await asyncio.sleep(TTL / 4)
    await auth.authenticate(token)
    await asyncio.sleep(0.05)
    assert (await auth.authenticate(token)).name == "before"


async def test_a_re_read_of_one_key_keeps_the_other_cached_keys():
    key1, token1 = await new_key("use", name="one")
    _key2, token2 = await new_key("use", name="two")
    await auth.authenticate(token1)
    await asyncio.sleep(TTL / 2 + 0.05)
    await auth.authenticate(token2)  # cached later: not due yet
    await behind_its_back(_key2, name="two renamed")
    await auth.authenticate(token1)  # due: re-read
    await asyncio.sleep(0.1)
    assert (await auth.authenticate(token2)).name == "two"
    assert (await auth.authenticate(token1)).name == "one"


async def test_clearing_the_cache_forgets_every_answer():
    key, token = await new_key("use")
    assert await auth.authenticate("qpk_00000000_wrong") is None
    assert await auth.authenticate(token) is not None
    await behind_its_back(key, enabled=False)
    auth.clear_cache()
    assert await auth.authenticate(token) is None
    await behind_its_back(key, enabled=True)
    auth.clear_cache()
    assert await auth.authenticate(token) is not None


async def test_a_wrong_token_is_remembered_until_the_cache_time_passes():
    token = "qpk_abcd1234_secret"
    assert await auth.authenticate(token) is None
    # bulk_create sends no signal: as if another replica created it and its message was lost
    await ClientKey.objects.abulk_create(
        [ClientKey(name="late", prefix="abcd1234", secret_hash=auth.hash_token(token), scopes=["use"])])
    assert await auth.authenticate(token) is None  # remembered as wrong
    await asyncio.sleep(TTL + 0.05)
    assert (await auth.authenticate(token)).name == "late"


async def test_the_last_use_of_a_key_is_recorded_once_a_minute():
    key, token = await new_key("use")
    await auth.authenticate(token)
    for _ in range(50):  # recorded off the request path: wait for it
        first = (await ClientKey.objects.aget(pk=key.pk)).last_used_at
        if first is not None:
            break
        await asyncio.sleep(0.05)
    assert first is not None and timezone.now() - first < timedelta(seconds=5)
    await behind_its_back(key, last_used_at=None)
    await auth.authenticate(token)
    await asyncio.sleep(0.2)
    assert (await ClientKey.objects.aget(pk=key.pk)).last_used_at is None  # not again within the minute
