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
