"""Per-request plumbing: request id, authentication, one structured log line.

The log line carries ids, the decision and timings; never the prompt, the answer or a key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
import uuid

from flask import Flask, current_app, g, request

from ..errors import Unauthorized

access_log = logging.getLogger("gateway.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_PROTECTED = ("/api/", "/v1/")
# The chat routes and the surface each is (the `surface` label of api_gateway_requests_total).
_CHAT_ROUTES = {"/api/v1/chat": "native", "/v1/chat/completions": "openai", "/v1/messages": "messages",
                "/v1/responses": "responses",
                "/v1/embeddings": "embeddings", "/api/v1/embed": "embeddings"}


def _presented_key(headers) -> str | None:
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return headers.get("X-API-Key") or None


def key_id(key: str) -> str:
    """How a key is named in logs, stats, budgets and the decision log: a prefix of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def key_matches(presented: str, keys: tuple[str, ...]) -> bool:
    """Constant-time comparison against every configured key (no early exit that leaks which one)."""
    found = False
    given = presented.encode()
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


def register_hooks(app: Flask) -> None:
    # The proxies (request, g, current_app) are resolved once per hook: each use costs a context lookup.
    @app.before_request
    def _start():
        req, ctx, svc = request._get_current_object(), g._get_current_object(), current_app.extensions["gateway"]
        ctx.started = time.perf_counter()
        headers = req.headers
        incoming = headers.get("X-Request-ID", "")
        ctx.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        ctx.api_key_id = None
        rule = req.url_rule
        if rule is not None and rule.rule in _CHAT_ROUTES:
            ctx.chat = True
            svc.telemetry.in_flight(+1)
        settings = svc.settings
        # With no keys configured there is one tenant (everyone): it sees everything, as before keys existed.
        ctx.admin = not (settings.api_keys or settings.admin_keys)
        if not ctx.admin and req.path.startswith(_PROTECTED):
            presented = _presented_key(headers)
            admin = bool(presented) and key_matches(presented, settings.admin_keys)
            if not presented or not (admin or key_matches(presented, settings.api_keys)):
                raise Unauthorized("missing or invalid API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                                   headers={"WWW-Authenticate": 'Bearer realm="gateway"'})
            ctx.api_key_id = key_id(presented)
            ctx.admin = admin

    @app.after_request
    def _finish(response):
        req, ctx, svc = request._get_current_object(), g._get_current_object(), current_app.extensions["gateway"]
        started = getattr(ctx, "started", None) or time.perf_counter()
        request_id = getattr(ctx, "request_id", None)
        response.headers["X-Request-ID"] = request_id or ""
        rule = req.url_rule
        chat_route = rule is not None and rule.rule in _CHAT_ROUTES
        fields = {"request_id": request_id, "method": req.method, "route": rule.rule if rule else "unmatched",
                  "status": response.status_code, "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                  "key_id": getattr(ctx, "api_key_id", None), "client": req.remote_addr,
                  "pid": os.getpid()}  # which gunicorn worker: a stuck or leaking one can be found
        outcome, decision = getattr(ctx, "outcome", None), getattr(ctx, "decision", None)
        if decision is not None:
            fields.update(strategy=decision.strategy, tier=decision.tier, score=decision.score,
                          decided_model=decision.model)
        if outcome is not None:
            usage = outcome.completion.usage
            fields.update(model=outcome.model, backend=outcome.backend, attempts=len(outcome.attempts),
                          cost=outcome.cost, cached=outcome.cached, input_tokens=usage.input_tokens,
                          output_tokens=usage.output_tokens)
        error_type = getattr(ctx, "error_type", None)
        if error_type:
            fields["error"] = error_type
            if chat_route:
                svc.record_error(str(response.status_code), getattr(ctx, "api_key_id", None))
        live = getattr(ctx, "live", None)
        telemetry = svc.telemetry
        if live is not None and response.is_streamed:
            # A stream's line and metrics are written when it ends (or the client leaves).
            status = response.status_code
            surface = _CHAT_ROUTES.get(rule.rule if rule else "", "other")
            response.call_on_close(lambda: _end_stream(telemetry, fields, live, status, started, surface))
            return response
        if getattr(ctx, "chat", False):
            telemetry.in_flight(-1)
            status = response.status_code
            if outcome is not None or status >= 400:
                result = "ok" if status < 400 else "rejected" if status < 500 else "error"
                telemetry.request(outcome, decision, status, time.perf_counter() - started,
                                  _CHAT_ROUTES.get(rule.rule if rule else "", "other"), result=result, cause=error_type)
        if req.path.startswith(("/health", "/metrics")) and response.status_code < 400:
            access_log.debug("request", extra={"fields": fields})
        else:
            access_log.info("request", extra={"fields": fields})
        return response


def _end_stream(telemetry, fields: dict, live, status: int, started: float, surface: str) -> None:
    telemetry.in_flight(-1)
    if live.outcome is not None:
        result, cause = "ok", None
    elif live.error is not None:  # the upstream failed after the 200 went out: the status cannot say so
        result, cause = "interrupted", live.error.kind
    else:
        result, cause = "abandoned", "client_disconnected"
    telemetry.request(live.outcome, live.decision, status, time.perf_counter() - started, surface, stream=True,
                      result=result, cause=cause, first_token=live.first_token_seconds,
                      streamed_from=(live.model.name, live.backend))
    _log_stream(fields, live)


def _log_stream(fields: dict, live) -> None:
    fields = dict(fields, stream=True, model=live.model.name, backend=live.backend, attempts=len(live.attempts),
                  first_token_ms=round(live.first_token_seconds * 1000, 2))
    outcome = live.outcome
    if outcome is not None:
        fields.update(cost=outcome.cost, input_tokens=outcome.completion.usage.input_tokens,
                      output_tokens=outcome.completion.usage.output_tokens,
                      latency_ms=round(outcome.latency_seconds * 1000, 2))
    elif live.error is not None:
        fields["error"] = f"stream_interrupted:{live.error.kind}"
    else:
        fields["error"] = "client_disconnected"
    access_log.info("request", extra={"fields": fields})
