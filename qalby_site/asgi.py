"""ASGI entry point (daphne). Start-up fails with a clear message when configuration is unsafe.

The admin needs Django's whole middleware stack (sessions, CSRF, messages...); the API does not,
and each of those middlewares costs a thread hop per request. So API paths get a lean handler
with QALBY_API_MIDDLEWARE: about a third less time per proxied request (bench/README.md).
"""

import os

import django
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.test.utils import override_settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "qalby_site.settings")
django.setup(set_prefix=False)

from django.core import checks  # noqa: E402
from django.core.management.base import SystemCheckError  # noqa: E402

from providers import invalidation  # noqa: E402
from qalby_site import lifecycle, servers  # noqa: E402
from qalby_site.middleware import BodyLimit, NoClientRootPath, NoNulInUrl  # noqa: E402

# daphne runs no system checks of its own, and a server without its secrets must not start.
_errors = [e for e in checks.run_checks(tags=["qalby"]) if e.is_serious()]
if _errors:
    raise SystemCheckError("\n".join(f"{e.id}: {e.msg} {e.hint or ''}".strip() for e in _errors))


# Other replicas' changes to configs and keys reach this process's caches through Redis (if set).
invalidation.start_listener()


class ApiHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        with override_settings(MIDDLEWARE=settings.QALBY_API_MIDDLEWARE):
            super().load_middleware(is_async)


class SiteHandler(ASGIHandler):
    async def get_response_async(self, request):
        # The CSV export and static files have sync bodies (see servers.async_body).
        return servers.async_body(await super().get_response_async(request))


_site = SiteHandler()
_api = ApiHandler()
_SITE_PREFIXES = ("/admin", "/" + settings.STATIC_URL.strip("/"))


async def _route(scope, receive, send):
    handler = _site if scope["type"] == "http" and scope["path"].startswith(_SITE_PREFIXES) else _api
    await handler(scope, receive, send)


servers.tune_daphne()
lifecycle.install()
# Outermost: a broken stream is cut on the server's own connection (see servers.py).
application = servers.AbortableResponses(NoClientRootPath(BodyLimit(NoNulInUrl(_route))))
