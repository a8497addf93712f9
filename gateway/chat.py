"""The internal shapes every surface shares: ChatRequest in, Outcome out.

The native and OpenAI-compatible APIs both parse into a ChatRequest; dispatch returns an Outcome
that the response, the stats, the log line and the metrics all read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STRATEGIES = ("auto", "local-only", "cloud-first", "cost-aware", "cascade")
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Message, ...]
    model: str = "auto"              # "auto", a tier name or a model name
    strategy: str | None = None      # None: the configured default
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] = ()
    dry_run: bool = False
    stream: bool = False
    request_id: str = ""
    api_key_id: str | None = None    # a hash prefix of the caller's key, never the key

    @property
    def prompt(self) -> str:
        """The text the router scores: the last user message."""
        for m in reversed(self.messages):
            if m.role == "user":
                return m.content
        return ""

    @property
    def input_tokens_bound(self) -> int:
        """An upper bound on input tokens for budget reservations: no tokenizer makes a token out of less
        than one byte, plus a margin per message for the chat framing."""
        size = sum(len(m.content.encode()) for m in self.messages) + len((self.system or "").encode())
        return size + 16 * (len(self.messages) + 1)

    @property
    def input_tokens_estimate(self) -> int:
        """Rough token count of everything sent (about 4 characters a token), for cost and context fit."""
        chars = sum(len(m.content) for m in self.messages) + len(self.system or "")
        return max(1, -(-chars // 4))


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage
    finish_reason: str = "stop"
    # The sampled tokens' log-probabilities, when asked for and the backend reports them (cascade review).
    logprobs: tuple[float, ...] | None = None


@dataclass(slots=True)  # not frozen: made once per token, and a frozen init costs twice as much
class StreamDelta:
    """One piece of a streamed answer; the last one carries usage and finish_reason."""
    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    logprobs: tuple[float, ...] | None = None  # this piece's tokens', when asked for and reported


@dataclass
class Attempt:
    model: str
    backend: str
    outcome: str                       # "ok", "error", "skipped", or "rejected" (cascade: escalated)
    error_type: str | None = None
    status: int | None = None          # upstream HTTP status, when there was one
    latency_seconds: float = 0.0
    detail: str | None = None
    mean_logprob: float | None = None  # cascade: the local answer's mean token log-probability, when known
    cost: float | None = None          # USD charged for a failed paid try the upstream may have billed

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}  # flat: no deep copy (asdict)


@dataclass
class Outcome:
    request_id: str
    decision: Any                      # smart_router.Decision
    model: str
    backend: str
    tier: str
    completion: Completion
    cost: float
    attempts: list[Attempt] = field(default_factory=list)
    latency_seconds: float = 0.0
    cached: bool = False
    reservation: Any = None            # state.budget.Reservation held for this call, settled when recorded
    reason: str = ""                   # the decision's reason, amended when another model answered
    paid_fallback: bool = False        # a paid model answered because the local one it was decided for failed
