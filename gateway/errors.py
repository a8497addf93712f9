"""The gateway's exception hierarchy: each class knows its HTTP status and error type.

Pure (no Flask): the router and dispatch raise these, api/errors.py renders them.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    status = 500
    type = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, error_type: str | None = None,
                 **extra: Any):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.extra = extra  # more fields for the error body, e.g. the attempts made
        if error_type:
            self.type = error_type


class BadRequest(GatewayError):
    status, type = 400, "invalid_request"


class Unauthorized(GatewayError):
    status, type = 401, "authentication_error"


class Forbidden(GatewayError):
    status, type = 403, "forbidden"


class NotFound(GatewayError):
    status, type = 404, "not_found"


class UnknownModel(NotFound):
    type = "model_not_found"


class PayloadTooLarge(GatewayError):
    status, type = 413, "payload_too_large"


class InvalidParameter(GatewayError):
    status, type = 422, "invalid_parameter"


class TooManyRequests(GatewayError):
    """A rate limit or the budget says no (429, with Retry-After where a wait helps)."""
    status, type = 429, "rate_limited"


class BudgetExceeded(TooManyRequests):
    type = "budget_exceeded"


class UpstreamError(GatewayError):
    """Every attempt failed and the last failure came from the upstream's answer."""
    status, type = 502, "upstream_error"


class ServiceUnavailable(GatewayError):
    """Nothing could serve the request: backends down, circuits open, model not pulled, rate limited."""
    status, type = 503, "backend_unavailable"


class UpstreamTimeout(GatewayError):
    status, type = 504, "upstream_timeout"
