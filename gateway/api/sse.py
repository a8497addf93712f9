"""Server-Sent Events: frame a LiveStream for a client, record its end, never end it silently.

Each surface supplies a framer (native events or OpenAI chunks). The stream ends with the framer's
`done` after the final usage, or with its `error` when the upstream failed after text was sent: a
truncated answer never looks complete. Closing the response (client gone) closes the upstream.

A structured answer (tools, a JSON response format) is checked before it is sent (gateway/answer_check.py):
the gateway reads the whole answer, checks it (escalating to the next capable model when it fails), then
streams it: its text word by word, each tool call whole in one piece (as Ollama sends them). Plain text
streams live, token by token, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol

from flask import Response, g, request

from .. import fastjson
from ..answer_check import structured
from ..catalog import ModelSpec
from ..chat import ChatRequest, Outcome, StreamDelta, ToolCallDelta
from ..dispatch import LiveStream, StreamInterrupted
from ..service import CachePolicy, GatewayService
from ..smart_router import Decision
from .render import gateway_headers

log = logging.getLogger("gateway.stream")


class Framer(Protocol):
    def start(self, live: LiveStream) -> str: ...
    def delta(self, live: LiveStream, delta: StreamDelta) -> str: ...
    def done(self, live: LiveStream, outcome: Outcome) -> str: ...
    def error(self, live: LiveStream, exc: StreamInterrupted) -> str: ...


def event(data: object, name: str | None = None) -> str:
    payload = data if isinstance(data, str) else fastjson.dumps(data)
    return (f"event: {name}\n" if name else "") + f"data: {payload}\n\n"


class ReplayStream:
    """A complete answer played back as a stream (a cache hit, a checked structured answer), with the
    attributes framers read from a LiveStream. It was recorded when it was made."""

    def __init__(self, outcome: Outcome, request: ChatRequest, model: ModelSpec):
        self.outcome, self.request, self.decision, self.model = outcome, request, outcome.decision, model
        self.backend, self.attempts, self.reservation = outcome.backend, outcome.attempts, None
        self.first_token_seconds, self.error, self.reason = outcome.latency_seconds, None, outcome.reason
        self.text = [outcome.completion.text]
        self.recorded = True

    def __iter__(self) -> Iterator[StreamDelta]:
        completion = self.outcome.completion
        words = completion.text.split(" ") if completion.text else []
        for i, word in enumerate(words):
            yield StreamDelta(word + (" " if i < len(words) - 1 else ""))
        for i, call in enumerate(completion.tool_calls):
            yield StreamDelta(tool_calls=(ToolCallDelta(i, call.id, call.name, call.arguments),))
        yield StreamDelta("", completion.usage, completion.finish_reason)

    def close(self) -> None:
        pass


def sse_response(svc: GatewayService, live: LiveStream | ReplayStream, framer: Framer, headers: dict[str, str],
                 policy: CachePolicy) -> Response:
    def frames() -> Iterator[str]:
        try:
            yield framer.start(live)
            for delta in live:
                if delta.text or delta.tool_calls:
                    yield framer.delta(live, delta)
                if delta.usage is not None and live.outcome is not None:
                    yield framer.done(live, live.outcome)
        except StreamInterrupted as exc:
            svc.record_error("stream_interrupted", live.request.api_key_id)
            log.warning("stream interrupted after text was sent", extra={"request_id": live.request.request_id,
                        "fields": {"model": live.model.name, "backend": live.backend, "error": exc.error.kind}})
            yield framer.error(live, exc)
        finally:
            svc.finish_stream(live, policy)

    _limit_send_time(svc.settings.stream_send_timeout_seconds)
    resp = Response(frames(), mimetype="text/event-stream", headers=headers)
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"  # nginx and friends: do not buffer the stream
    return resp


def _limit_send_time(seconds: float) -> None:
    """A client that stops reading must not hold its thread, its upstream call and its Ollama slot: each
    write to it may wait this long, then the server gives up on the connection, which closes the stream
    (frames() ends, the upstream request is closed, the slot freed, what was generated charged). gunicorn
    hands the client socket over in the environ and sets it back to blocking for its next request."""
    sock = request.environ.get("gunicorn.socket")
    if sock is not None:
        sock.settimeout(seconds)


def start_stream(svc: GatewayService, req: ChatRequest, decision: Decision, policy: CachePolicy,
                 framer: Framer) -> Response:
    """A cached answer replayed, a structured answer checked then replayed, or a live stream opened
    (failing over until the first token)."""
    if structured(req):
        outcome = g.outcome = svc.complete(req, decision, policy)
        live = ReplayStream(outcome, req, svc.settings.catalog.model(outcome.model))
        headers = gateway_headers(decision, outcome.model, outcome.backend, outcome.tier, len(outcome.attempts),
                                  outcome.cost, outcome.cached, outcome.reason)
        return sse_response(svc, live, framer, headers, policy)
    svc.begin(decision)
    hit = svc.cached(req, decision, policy)
    if hit is not None:
        g.outcome = hit
        live = ReplayStream(hit, req, svc.settings.catalog.model(hit.model))
    else:
        live = g.live = svc.open_stream(req, decision)
    headers = gateway_headers(decision, live.model.name, live.backend, live.model.tier, len(live.attempts),
                              cached=hit is not None, reason=live.reason)
    return sse_response(svc, live, framer, headers, policy)
