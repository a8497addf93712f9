"""The native API, /api/v1/*: the shapes the seed project documented, so its clients keep working."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify

from ..chat import Outcome
from ..service import GatewayService
from ..smart_router import Decision
from .validate import json_object, parse_chat

bp = Blueprint("native", __name__, url_prefix="/api/v1")


def _service() -> GatewayService:
    return current_app.extensions["gateway"]


def routing_body(decision: Decision) -> dict:
    return {
        "complexity": decision.score,
        "tier": decision.tier,
        "strategy": decision.strategy,
        "reason": decision.reason,
        "factors": decision.factors,
        "estimated_cost": decision.estimated_cost,
        "alternatives": [c.as_dict() for c in decision.alternatives],
    }


@bp.post("/chat")
def chat():
    svc = _service()
    req = parse_chat(json_object(), svc.settings, g.request_id, g.api_key_id)
    decision = g.decision = svc.decide(req)
    if req.dry_run:
        return jsonify({"request_id": req.request_id, "dry_run": True, "model": decision.model,
                        "backend": decision.backend, "routing": routing_body(decision) | {"attempts": []}})
    outcome: Outcome = svc.complete(req, decision)
    g.outcome = outcome
    return jsonify({
        "request_id": req.request_id,
        "model": outcome.model,
        "backend": outcome.backend,
        "response": outcome.completion.text,
        "finish_reason": outcome.completion.finish_reason,
        "usage": {"input_tokens": outcome.completion.usage.input_tokens,
                  "output_tokens": outcome.completion.usage.output_tokens},
        "cost": outcome.cost,
        "routing": routing_body(decision) | {"attempts": [a.as_dict() for a in outcome.attempts]},
        "latency_seconds": outcome.latency_seconds,
        "cached": outcome.cached,
    })


@bp.post("/complexity")
def complexity():
    svc = _service()
    req = parse_chat(json_object(), svc.settings, g.request_id, g.api_key_id)
    decision = g.decision = svc.decide(req)
    return jsonify({
        "request_id": req.request_id,
        "complexity": decision.score,
        "factors": decision.factors,
        "recommended": {"model": decision.model, "backend": decision.backend, "tier": decision.tier},
        "estimated_cost": decision.estimated_cost,
        "reason": decision.reason,
        "alternatives": [c.as_dict() for c in decision.alternatives],
    })


@bp.get("/models")
def models():
    svc = _service()
    settings, up = svc.settings, svc.upstreams
    missing = up.missing_models()
    enabled_tiers = {t.name for t in settings.catalog.tiers if t.min_deployment_tier <= settings.deployment_tier}
    out = []
    for m in settings.catalog.models:
        configured = m.backend in up.backends
        state = up.model_state(m) if configured else None
        out.append({
            "name": m.name, "id": m.id, "backend": m.backend, "tier": m.tier,
            "configured": configured,
            "routable": configured and m.tier in enabled_tiers,
            "available": bool(state and state.available) and m.name not in missing,
            "warm": state.warm if state else None,
            "circuit": up.breakers[m.backend].state if configured else "unconfigured",
            "context_window": m.context_window,
            "price_in_per_mtok": m.price_in_per_mtok,
            "price_out_per_mtok": m.price_out_per_mtok,
        })
    return jsonify({"models": out, "prices_as_of": settings.catalog.prices_as_of,
                    "deployment_tier": settings.deployment_tier})


@bp.get("/stats")
def stats():
    return jsonify(_service().stats.snapshot())
