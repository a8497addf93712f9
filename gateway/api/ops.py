"""Operations: liveness and readiness. Open without an API key so orchestrators can probe them."""

from __future__ import annotations

import hmac
import os

from flask import Blueprint, Response, current_app, jsonify, request

from ..errors import Forbidden, Unauthorized
from ..procstat import gunicorn_processes
from ..state import StateUnavailable
from ..telemetry import gauges, render
from .client_address import in_networks
from .hooks import key_id

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
    # Ready (something can answer) is not fine: with the local backend down, its prompts are refused or paid for.
    degraded = sorted(name for name, b in backends.items() if not b["ok"])
    redis = svc.state.redis
    # Requests are still served with Redis down (cache off, stats degraded), so it does not decide readiness.
    shared = {"configured": redis is not None, "ok": redis.ping() if redis is not None else None,
              "failure_policy": svc.settings.redis_failure_policy}
    resp = jsonify({"status": "ready" if ok else "unavailable", "backends": backends, "degraded": degraded,
                    "redis": shared})
    resp.status_code = 200 if ok else 503
    return resp


@bp.get("/metrics")
def metrics():
    """Prometheus exposition: every worker's counters plus scrape-time gauges (backends, budget, GPU)."""
    svc = current_app.extensions["gateway"]
    settings = svc.settings
    # Spend, model names and traffic are not public. A token (./install.sh generates METRICS_TOKEN) works
    # from anywhere; without one, only networks the operator listed. No address is trusted by default:
    # behind a proxy (the edge, Docker's port proxy) every client comes from a private or loopback address.
    given = request.headers.get("Authorization", "")
    token = settings.metrics_token
    allowed = bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    if not (allowed or in_networks(request.remote_addr, settings.metrics_trusted_networks)):
        if token:
            raise Unauthorized("GET /metrics needs 'Authorization: Bearer METRICS_TOKEN'")
        raise Forbidden("metrics need METRICS_TOKEN (sent as 'Authorization: Bearer ...') or a client address in "
                        "METRICS_TRUSTED_NETWORKS; neither is set")

    def sample():
        up = svc.upstreams
        backends = {name: up.health(name).ok for name in up.backends}
        budget, key_spend = None, None
        settings = svc.settings
        known_keys = {key_id(k) for k in (*settings.api_keys, *settings.admin_keys)}
        try:
            totals = svc.state.ledger.month_totals()
            budget = (totals.get("total", 0.0), svc.state.limits.monthly_usd, max(0.0, totals.get("reserved", 0.0)))
            # configured keys only: the label stays bounded whatever the ledger holds
            key_spend = {k: totals.get(f"key:{k}", 0.0) for k in known_keys}
        except StateUnavailable:
            pass  # no budget gauges while Redis is down: absent beats wrong
        redis = svc.state.redis
        loaded = {}
        for m in settings.catalog.models:
            if up.backends.get(m.backend) is not None and backends.get(m.backend):
                state = up.model_state(m)
                if state.available and state.warm is not None:
                    loaded[(m.name, m.backend)] = state.warm
        pool = getattr(up.backends.get("ollama"), "pool", None)
        hosts = None
        if pool is not None and not pool.single:
            busy = pool.in_flight()
            hosts = {h.url: (bool(h.health and h.health.ok), busy.get(h.url, 0)) for h in pool.hosts}
        try:
            calibration = svc.calibrator.gauges()
        except StateUnavailable:
            calibration = None
        return gauges(backends, budget, svc.gpu.report().gpus, redis.ping() if redis is not None else None,
                      key_spend, loaded, gunicorn_processes() if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else (),
                      hosts, calibration)

    return Response(render(sample), mimetype="text/plain; version=0.0.4; charset=utf-8")


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of every route (open, like the health checks)."""
    from ..openapi import spec

    return jsonify(spec())
