"""The two Django handlers the ASGI entry point routes between: the admin's and the API's.

The admin needs Django's whole middleware stack (sessions, CSRF, messages...); the API does not,
and each of those sync middlewares costs a thread hop per request. Beyond its middleware, Django's
ASGI handler itself costs the API a thread per request: it serves each request inside a new
``ThreadSensitiveContext`` (whose first sync call starts a thread), sends ``request_started`` and
``request_finished`` through ``asend`` (their receivers are sync: a thread hop each), and closes
the response through ``sync_to_async``. No API view runs sync code on its request's path (its
database work goes through ``providers.db``, which does the connection hygiene those receivers
exist for, in the thread that holds the connection), so :class:`ApiHandler` does all of that
inline on the event loop.
"""

from __future__ import annotations

import asyncio

from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.test.utils import override_settings
from django.urls import set_script_prefix

from qalby_site import servers


class ApiHandler(ASGIHandler):
    def load_middleware(self, is_async=False):
        with override_settings(MIDDLEWARE=settings.QALBY_API_MIDDLEWARE):
            super().load_middleware(is_async)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def handle(self, scope, receive, send):
        # Django's ASGIHandler.handle, less the thread hops (see the module's docstring).
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        # Inline: the receivers (close_old_connections, reset_queries) find no connection in this thread.
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            error_response.close()
            return

        async def process_request():
            response = await self.run_get_response(request)
            try:
                await self.send_response(response, send)
            except asyncio.CancelledError:
                pass  # the client left while the response was sent
            return response

        # As Django does: listen for the client's disconnect while the response is made and sent.
        listener = asyncio.create_task(self.listen_for_disconnect(receive))
        processor = asyncio.create_task(process_request())
        await asyncio.wait((listener, processor), return_when=asyncio.FIRST_COMPLETED)
        for task in (listener, processor):
            if task.done():
                try:
                    task.result()
                except RequestAborted:
                    pass
                except AssertionError:
                    body_file.close()
                    raise
            else:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        try:
            response = processor.result()
        except asyncio.CancelledError:
            signals.request_finished.send(sender=self.__class__)
        else:
            response.close()  # the API's responses have nothing to close that would block
        body_file.close()


class SiteHandler(ASGIHandler):
    async def get_response_async(self, request):
        # The CSV export and static files have sync bodies (see servers.async_body).
        return servers.async_body(await super().get_response_async(request))
