"""Request logs, the auditors' concern in one room.

What the request path uses is here: :class:`Entry`, :data:`current`, :func:`note` and
:func:`attach_attempts` (entry.py). Around it: the middleware that opens and submits an entry
(middleware.py), the batching writer (batching.py), the tables (models.py, re-exported by
providers.models: the app label stays ``providers``), the read-only admin with its CSV export and
overview (admin.py, overview.py, charts.py), Prometheus metrics (metrics.py), traces (tracing.py),
and the shutdown hook that writes the last logs (shutdown.py). The site names the middleware, the
metrics registry and the shutdown hook only by dotted paths in its settings.
"""

from providers.requestlogs.entry import Entry, attach_attempts, current, note

__all__ = ["Entry", "attach_attempts", "current", "note"]
