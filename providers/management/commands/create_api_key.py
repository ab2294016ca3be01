from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from providers.models import SCOPES
from providers.services import client_key_create


class Command(BaseCommand):
    help = "Create a client API key and print its secret once (only a hash is stored)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--scope", action="append", choices=SCOPES, dest="scopes", required=True)
        parser.add_argument("--route", action="append", dest="routes", default=None,
                            help="A route this key may use (repeat); without it, every route")
        parser.add_argument("--routes-only", action="store_true",
                            help="The key may not name provider configs directly, only routes")

    def handle(self, name, scopes, routes=None, routes_only=False, **options):
        try:
            key, token = client_key_create(name=name, scopes=scopes, routes=routes, direct=not routes_only)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stderr.write(f"Created key '{key.name}' (prefix {key.prefix}, scopes: {', '.join(key.scopes)}).")
        self.stderr.write("The secret below is shown once; store it now.")
        self.stdout.write(token)
