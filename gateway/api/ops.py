"""Operations: liveness and readiness. Open without an API key so orchestrators can probe them."""

from __future__ import annotations

import hmac
import ipaddress

from flask import Blueprint, Response, current_app, jsonify, request

from ..errors import Forbidden, Unauthorized
from ..state import StateUnavailable
from ..telemetry import gauges, render

bp = Blueprint("ops", __name__)


@bp.get("/health")
def health():
    """Liveness: the process answers. No upstream calls, so a dead upstream never restarts the gateway."""
    return jsonify({"status": "ok"})


@bp.get("/health/ready")
def ready():
    """Readiness: at least one backend can take requests (health cached HEALTH_CACHE_SECONDS)."""
    svc = current_app.extensions["gateway"]
    up = svc.upstreams
    backends = {}
    for name in up.backends:
        h = up.health(name)
        circuit = up.breakers[name].state
        backends[name] = {"ok": h.ok and circuit != "open", "detail": h.detail, "circuit": circuit}
    ok = any(b["ok"] for b in backends.values())
    redis = svc.state.redis
    # Requests are still served with Redis down (cache off, stats degraded), so it does not decide readiness.
    shared = {"configured": redis is not None, "ok": redis.ping() if redis is not None else None,
              "failure_policy": svc.settings.redis_failure_policy}
    resp = jsonify({"status": "ready" if ok else "unavailable", "backends": backends, "redis": shared})
    resp.status_code = 200 if ok else 503
    return resp


@bp.get("/metrics")
def metrics():
    """Prometheus exposition: every worker's counters plus scrape-time gauges (backends, budget, GPU)."""
    svc = current_app.extensions["gateway"]
    token = svc.settings.metrics_token
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise Unauthorized("GET /metrics needs 'Authorization: Bearer METRICS_TOKEN'")
    elif not _private(request.remote_addr):
        # The gateway port is public; spend and model names are not. Without a token, only private
        # networks (Prometheus on the compose network, loopback, a VPC) may scrape.
        raise Forbidden("metrics are served to private networks only; set METRICS_TOKEN to scrape from elsewhere")

    def sample():
        up = svc.upstreams
        backends = {name: (up.health(name).ok, up.breakers[name].state == "open") for name in up.backends}
        budget = None
        try:
            totals = svc.state.ledger.month_totals()
            budget = (totals.get("total", 0.0), svc.state.limits.monthly_usd)
        except StateUnavailable:
            pass  # no budget gauges while Redis is down: absent beats wrong
        return gauges(backends, budget, svc.gpu.report().gpus)

    return Response(render(sample), mimetype="text/plain; version=0.0.4; charset=utf-8")


def _private(addr: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(addr or "")
    except ValueError:
        return False  # a unix socket or a proxy that hides the peer: no token, no metrics
    return ip.is_private or ip.is_loopback


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of every route (open, like the health checks)."""
    from ..openapi import spec

    return jsonify(spec())
