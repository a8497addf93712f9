"""Pieces both surfaces render the same way: the routing block and the X-Gateway-* headers."""

from __future__ import annotations

import re

from ..chat import Usage
from ..smart_router import Decision

_UNSAFE = re.compile(r"[^\x20-\x7e]")


def header_safe(text: str, limit: int = 300) -> str:
    """Client-given or upstream text fit for a header: printable ASCII only, bounded."""
    return _UNSAFE.sub("?", text)[:limit]


def routing_body(decision: Decision, reason: str | None = None) -> dict:
    """`reason`: the decision's, amended when another model answered (Outcome.reason, LiveStream.reason)."""
    return {
        "complexity": decision.score,
        "tier": decision.tier,
        "strategy": decision.strategy,
        "reason": reason or decision.reason,
        "factors": decision.factors,
        "estimated_cost": decision.estimated_cost,
        "alternatives": [c.as_dict() for c in decision.alternatives],
    }


def gateway_headers(decision: Decision, model: str, backend: str, tier: str, attempts: int,
                    cost: float | None = None, cached: bool = False, reason: str | None = None) -> dict[str, str]:
    """Routing metadata for clients that validate bodies strictly (OpenAI SDKs): headers only."""
    headers = {
        "X-Gateway-Model": model,
        "X-Gateway-Backend": backend,
        "X-Gateway-Tier": tier,
        "X-Gateway-Strategy": decision.strategy,
        "X-Gateway-Complexity": f"{decision.score:.4f}",
        "X-Gateway-Reason": _UNSAFE.sub("?", reason or decision.reason)[:300],
        "X-Gateway-Estimated-Cost": f"{decision.estimated_cost:.8f}",
        "X-Gateway-Attempts": str(attempts),
        "X-Gateway-Cached": "true" if cached else "false",
    }
    if cost is not None:
        headers["X-Gateway-Cost"] = f"{cost:.8f}"
    return headers


def native_usage(usage: Usage) -> dict:
    """The native API's usage: input tokens (all of them) and output; the prompt cache's part when there was one."""
    out = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
    if usage.cached:
        out["cache_read_tokens"] = usage.cache_read_tokens
        out["cache_write_tokens"] = usage.cache_write_tokens + usage.cache_write_1h_tokens
    return out


def openai_usage(usage: Usage) -> dict:
    """OpenAI's usage: prompt_tokens counts cached ones too, and prompt_tokens_details says how many."""
    out = {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
           "total_tokens": usage.input_tokens + usage.output_tokens}
    if usage.cached:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cache_read_tokens}
    return out
