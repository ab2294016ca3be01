"""ASGI entry point (daphne). Start-up fails with a clear message when configuration is unsafe."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qalby_site.settings")
django_application = get_asgi_application()

from django.core import checks  # noqa: E402
from django.core.management.base import SystemCheckError  # noqa: E402

from qalby_site.middleware import BodyLimit  # noqa: E402

# daphne runs no system checks of its own, and a server without its secrets must not start.
_errors = [e for e in checks.run_checks(tags=["qalby"]) if e.is_serious()]
if _errors:
    raise SystemCheckError("\n".join(f"{e.id}: {e.msg} {e.hint or ''}".strip() for e in _errors))

application = BodyLimit(django_application)
