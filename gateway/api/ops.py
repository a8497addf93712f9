"""Operations: liveness and readiness. Open without an API key so orchestrators can probe them."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

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
