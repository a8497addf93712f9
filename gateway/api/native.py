"""The native API, /api/v1/*: the shapes the seed project documented, so its clients keep working.

Streaming (`stream: true` on /api/v1/chat) is Server-Sent Events:
  event: start  data: {request_id, model, backend, tier, routing}
  event: delta  data: {text}                                  (repeated)
  event: tool_call data: {index, id, type, function: {name, arguments}}  (one per call, whole)
  event: done   data: {finish_reason, usage, cost, latency_seconds, first_token_seconds, attempts}
  event: error  data: {error: {type, message}, request_id}    (instead of done, if the upstream failed)
"""

from __future__ import annotations

import re

from flask import Blueprint, current_app, g, jsonify, request

from ..catalog import EMBEDDING
from ..chat import Outcome, StreamDelta
from ..dispatch import LiveStream, StreamInterrupted
from ..errors import Forbidden, InvalidParameter
from ..service import GatewayService
from .openai import assistant_message
from .render import gateway_headers, native_usage, routing_body
from .sse import event, start_stream
from .validate import cache_policy, json_object, parse_chat

bp = Blueprint("native", __name__, url_prefix="/api/v1")
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")


def _service() -> GatewayService:
    return current_app.extensions["gateway"]


@bp.post("/chat")
def chat():
    svc = _service()
    req = parse_chat(json_object(), svc.settings, g.request_id, g.api_key_id)
    decision = g.decision = svc.decide(req)
    if req.dry_run:
        return jsonify({"request_id": req.request_id, "dry_run": True, "model": decision.model,
                        "backend": decision.backend, "routing": routing_body(decision) | {"attempts": []}})
    svc.admit(req)
    policy = cache_policy()
    if req.stream:
        return start_stream(svc, req, decision, policy, NativeFramer())
    outcome: Outcome = svc.complete(req, decision, policy)
    g.outcome = outcome
    resp = jsonify({
        "request_id": req.request_id,
        "model": outcome.model,
        "backend": outcome.backend,
        "response": outcome.completion.text,
        "finish_reason": outcome.completion.finish_reason,
        "tool_calls": assistant_message(outcome.completion).get("tool_calls", []),
        "usage": native_usage(outcome.completion.usage),
        "cost": outcome.cost,
        "routing": routing_body(decision, outcome.reason) | {"attempts": [a.as_dict() for a in outcome.attempts]},
        "latency_seconds": outcome.latency_seconds,
        "cached": outcome.cached,
    })
    resp.headers.extend(gateway_headers(decision, outcome.model, outcome.backend, outcome.tier,
                                        len(outcome.attempts), outcome.cost, outcome.cached, outcome.reason))
    return resp


class NativeFramer:
    def start(self, live: LiveStream) -> str:
        return event({"request_id": live.request.request_id, "model": live.model.name, "backend": live.backend,
                      "tier": live.model.tier, "routing": routing_body(live.decision, live.reason)}, "start")

    def delta(self, live: LiveStream, delta: StreamDelta) -> str:
        out = event({"text": delta.text}, "delta") if delta.text else ""
        for piece in delta.tool_calls or ():
            out += event({"index": piece.index, "id": piece.id, "type": "function",
                          "function": {"name": piece.name, "arguments": piece.arguments}}, "tool_call")
        return out

    def done(self, live: LiveStream, outcome: Outcome) -> str:
        return event({"finish_reason": outcome.completion.finish_reason,
                      "usage": native_usage(outcome.completion.usage),
                      "cost": outcome.cost, "latency_seconds": outcome.latency_seconds,
                      "first_token_seconds": live.first_token_seconds,
                      "attempts": [a.as_dict() for a in outcome.attempts]}, "done")

    def error(self, live: LiveStream, exc: StreamInterrupted) -> str:
        return event({"error": {"type": "stream_interrupted",
                                "message": f"the upstream failed mid-answer ({exc.error.kind}); the text above is "
                                           "incomplete"},
                      "request_id": live.request.request_id}, "error")


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
    reported = up.capabilities()  # what Ollama says of its pulled models wins over configs/models.yaml
    out = []
    for m in (*settings.catalog.models, *settings.catalog.embedding_models):
        configured = m.backend in up.backends
        state = up.model_state(m) if configured else None
        embedding = m.tier == EMBEDDING
        out.append({
            "name": m.name, "id": m.id, "backend": m.backend, "tier": m.tier,
            "kind": "embedding" if embedding else "chat",
            "configured": configured,
            "routable": configured and (embedding or m.tier in enabled_tiers),
            "available": bool(state and state.available) and m.name not in missing,
            "warm": state.warm if state else None,
            "circuit": up.breakers[m.backend].state if configured else "unconfigured",
            "context_window": m.context_window,
            "capabilities": [] if embedding else sorted(reported.get(m.name, m.capabilities)),
            "price_in_per_mtok": m.price_in_per_mtok,
            "price_out_per_mtok": m.price_out_per_mtok,
        })
    return jsonify({"models": out, "prices_as_of": settings.catalog.prices_as_of,
                    "deployment_tier": settings.deployment_tier})


@bp.get("/stats")
def stats():
    """Counts, spend and savings: every key's for an admin key, the caller's own for any other."""
    return jsonify(_service().stats_report(_own_scope()))


@bp.get("/gpu")
def gpu():
    """GPUs seen by the gateway (NVML, else nvidia-smi), sampled every GPU_SAMPLE_SECONDS."""
    report = _service().gpu.report()
    return jsonify({"source": report.source, "detail": report.detail, "sampled_at": report.sampled_at,
                    "gpus": [g.as_dict() for g in report.gpus]})


@bp.get("/budget")
def budget():
    """The month's budget: global, or (?key=KEY_ID) one key's own. A key that is not an admin key sees
    only its own, with or without ?key."""
    asked = request.args.get("key") or None
    if asked is not None and not _KEY_ID.match(asked):
        raise InvalidParameter("'key' is a key id (the 12 hex characters the stats and logs show), never a key",
                               param="key")
    own = _own_scope()
    if own is not None and asked not in (None, own):
        raise Forbidden("a key sees only its own budget; an admin key (GATEWAY_ADMIN_KEYS) sees every key's")
    return jsonify(_service().budget(asked or own))


@bp.get("/decisions")
def decisions():
    """The newest routing decisions, oldest first (?limit=N, 1-1000, default 100): every key's for an admin
    key, the caller's own for any other."""
    raw = request.args.get("limit", "100")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        raise InvalidParameter("'limit' must be an integer between 1 and 1000", param="limit")
    return jsonify({"decisions": _service().decisions(int(raw), _own_scope())})


def _own_scope() -> str | None:
    """None: the caller may see every key's data (an admin key, or no keys configured); else its key id."""
    return None if g.admin else g.api_key_id
