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
    up = current_app.extensions["gateway"].upstreams
    backends = {}
    for name in up.backends:
        h = up.health(name)
        circuit = up.breakers[name].state
        backends[name] = {"ok": h.ok and circuit != "open", "detail": h.detail, "circuit": circuit}
    ok = any(b["ok"] for b in backends.values())
    resp = jsonify({"status": "ready" if ok else "unavailable", "backends": backends})
    resp.status_code = 200 if ok else 503
    return resp
