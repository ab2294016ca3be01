"""Log records carry the request id; LOG_FORMAT=json writes them as one JSON object per line."""

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

# The id of the request being served; set by qalby_site.middleware.RequestIdMiddleware.
current_request_id: ContextVar[str] = ContextVar("qalby_request_id", default="-")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


class NoOutageTracebacks(logging.Filter):
    """Drops Django's per-request error record when the error is the database or Redis being
    unreachable: the outage is logged once when it begins and once when it ends (providers/outage.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from providers.outage import INFRASTRUCTURE

        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, INFRASTRUCTURE)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)
