"""One place that turns exceptions into JSON errors: {error: {type, message, ...}, request_id}.

Never a stack trace to the client: unexpected exceptions are logged with the request id and answered
with a generic 500.
"""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify
from werkzeug.exceptions import HTTPException

from ..errors import GatewayError

log = logging.getLogger("gateway.errors")

_HTTP_TYPES = {400: "invalid_request", 401: "authentication_error", 404: "not_found",
               405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}
_HTTP_MESSAGES = {404: "no such route", 405: "method not allowed on this route",
                  413: "request body is larger than MAX_BODY_BYTES", 400: "malformed request"}


def error_response(status: int, type_: str, message: str, headers: dict | None = None, **extra):
    body = {"error": {"type": type_, "message": message, **extra}, "request_id": getattr(g, "request_id", None)}
    resp = jsonify(body)
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    g.error_type = type_
    return resp


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(GatewayError)
    def _gateway_error(exc: GatewayError):
        return error_response(exc.status, exc.type, exc.message, exc.headers, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        headers = {"Allow": ", ".join(exc.valid_methods)} if getattr(exc, "valid_methods", None) else None
        return error_response(status, _HTTP_TYPES.get(status, "http_error"),
                              _HTTP_MESSAGES.get(status, exc.name.lower()), headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        # The traceback goes to the log (it carries no prompt text), never to the client.
        log.exception("unhandled error", extra={"request_id": getattr(g, "request_id", None)})
        return error_response(500, "internal_error", "internal error; quote the request id when reporting it")
