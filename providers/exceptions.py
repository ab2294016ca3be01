"""The one error hierarchy. qalby_site/api.py alone turns these into HTTP responses."""


class QalbyError(Exception):
    """An error a client can act on; ``status`` is the HTTP status it maps to."""

    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(QalbyError):
    status = 400


class MissingScope(QalbyError):
    status = 403


class NotFound(QalbyError):
    status = 404


class PayloadTooLarge(QalbyError):
    status = 413
