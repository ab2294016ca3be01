"""An encrypted text field: the database column holds only Fernet ciphertext.

Keys come from settings.QALBY_ENCRYPTION_KEYS, newest first. MultiFernet encrypts with the
first and decrypts with any, so an operator rotates by prepending a new key, running
``manage.py rotate_encryption_keys``, and later dropping the old one.
"""

import logging
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

logger = logging.getLogger("qalby.encryption")


class DecryptionFailed(Exception):
    """A stored value cannot be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("QALBY_ENCRYPTION_KEYS is empty: set at least one Fernet key")
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError:
        raise ImproperlyConfigured(
            "QALBY_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe base64-encoded bytes)"
        ) from None


def fernet() -> MultiFernet:
    return _fernet_for(tuple(settings.QALBY_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    try:
        return fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed("stored secret cannot be decrypted with the configured keys") from None


def rotate(ciphertext: str) -> str:
    """Re-encrypt with the newest key (MultiFernet.rotate keeps the original timestamp)."""
    try:
        return fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionFailed("stored secret cannot be decrypted with the configured keys") from None


class Undecryptable(str):
    """What a stored secret reads as when no configured key decrypts it: empty, and marked.

    Reading must not fail (the admin and the config list must still open); using it must
    (see providers/adapter_cache.py), with a message that says which setting is wrong.
    """

    undecryptable = True

    def __new__(cls):
        return super().__new__(cls, "")


class EncryptedTextField(models.TextField):
    """Plaintext in Python, ciphertext in the database."""

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        try:
            return decrypt(value)
        except DecryptionFailed:
            logger.error("a stored %s cannot be decrypted with QALBY_ENCRYPTION_KEYS", self.model.__name__)
            return Undecryptable()

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return None if value is None or value == "" else encrypt(value)
