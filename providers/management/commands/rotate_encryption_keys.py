from django.core.management.base import BaseCommand, CommandError

from providers.fields import DecryptionFailed
from providers.services import encryption_keys_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored provider key with the newest key in QALBY_ENCRYPTION_KEYS. "
        "Put the new key first, run this, then remove the old key once every replica has the new list."
    )

    def handle(self, **options):
        try:
            count = encryption_keys_rotate()
        except DecryptionFailed as exc:
            raise CommandError(f"{exc}; nothing was changed") from None
        self.stdout.write(f"Re-encrypted {count} provider key(s) with the newest encryption key.")
