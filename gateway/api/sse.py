"""Server-Sent Events: frame a LiveStream for a client, record its end, never end it silently.

Each surface supplies a framer (native events or OpenAI chunks). The stream ends with the framer's
`done` after the final usage, or with its `error` when the upstream failed after text was sent: a
truncated answer never looks complete. Closing the response (client gone) closes the upstream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Protocol

from flask import Response

from ..chat import Outcome, StreamDelta
from ..dispatch import LiveStream, StreamInterrupted
from ..service import GatewayService

log = logging.getLogger("gateway.stream")


class Framer(Protocol):
    def start(self, live: LiveStream) -> str: ...
    def delta(self, live: LiveStream, delta: StreamDelta) -> str: ...
    def done(self, live: LiveStream, outcome: Outcome) -> str: ...
    def error(self, live: LiveStream, exc: StreamInterrupted) -> str: ...


def event(data: object, name: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {name}\n" if name else "") + f"data: {payload}\n\n"


def sse_response(svc: GatewayService, live: LiveStream, framer: Framer, headers: dict[str, str]) -> Response:
    def frames() -> Iterator[str]:
        try:
            yield framer.start(live)
            for delta in live:
                if delta.text:
                    yield framer.delta(live, delta)
                if live.outcome is not None:
                    svc.record(live.outcome)
                    yield framer.done(live, live.outcome)
        except StreamInterrupted as exc:
            svc.record_error("stream_interrupted")
            log.warning("stream interrupted after text was sent", extra={"request_id": live.request.request_id,
                        "fields": {"model": live.model.name, "backend": live.backend, "error": exc.error.kind}})
            yield framer.error(live, exc)
        finally:
            live.close()

    resp = Response(frames(), mimetype="text/event-stream", headers=headers)
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"  # nginx and friends: do not buffer the stream
    return resp
