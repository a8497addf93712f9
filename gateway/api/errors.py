"""One place that turns exceptions into JSON errors, in the flavour of the surface that was called.

Native (/api, /health):  {"error": {"type", "message", ...}, "request_id"}
OpenAI (/v1):            {"error": {"message", "type", "param", "code"}}   (code = the gateway's own type)
Anthropic (/v1/messages): {"type": "error", "error": {"type", "message"}, "request_id"}
Never a stack trace to the client: unexpected exceptions are logged with the request id and answered
with a generic 500.
"""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from ..errors import GatewayError
from ..state import StateUnavailable

log = logging.getLogger("gateway.errors")

_HTTP_TYPES = {400: "invalid_request", 401: "authentication_error", 404: "not_found",
               405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}
_HTTP_MESSAGES = {404: "no such route", 405: "method not allowed on this route",
                  413: "request body is larger than MAX_BODY_BYTES", 400: "malformed request"}


def openai_error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    return "invalid_request_error" if status < 500 else "server_error"


def _anthropic_type(status: int) -> str:
    """Anthropic's error types, which its SDK and Claude Code act on (429 and 529 are retried)."""
    return {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 413: "request_too_large",
            429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}.get(
        status, "invalid_request_error" if status < 500 else "api_error")


def error_response(status: int, type_: str, message: str, headers: dict | None = None, **extra):
    g.error_type = type_
    if request.path.startswith("/v1/messages"):
        body = {"type": "error", "error": {"type": _anthropic_type(status), "message": message},
                "request_id": getattr(g, "request_id", None)}
    elif request.path.startswith("/v1/"):
        body = {"error": {"message": message, "type": openai_error_type(status), "param": extra.get("param"),
                          "code": type_}}
    else:
        body = {"error": {"type": type_, "message": message, **extra}, "request_id": getattr(g, "request_id", None)}
    resp = jsonify(body)
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(GatewayError)
    def _gateway_error(exc: GatewayError):
        return error_response(exc.status, exc.type, exc.message, exc.headers, **exc.extra)

    @app.errorhandler(StateUnavailable)
    def _state_down(exc: StateUnavailable):
        return error_response(503, "state_unavailable", "shared state (Redis) is unavailable; try again shortly",
                              {"Retry-After": "2"})

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
