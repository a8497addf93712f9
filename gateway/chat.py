"""The internal shapes every surface shares: ChatRequest in, Outcome out.

The native and OpenAI-compatible APIs both parse into a ChatRequest; dispatch returns an Outcome
that the response, the stats, the log line and the metrics all read.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

STRATEGIES = ("auto", "local-only", "cloud-first", "cost-aware", "cascade")
ROLES = ("system", "user", "assistant", "tool")
TOOL_CHOICES = ("auto", "none", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
# What a request can need from a model beyond text (ModelSpec.capabilities, configs/models.yaml).
CAPABILITIES = ("tools", "vision", "json_schema")
# The input tokens an image may cost at most: Anthropic scales images to ~1.15 megapixels (~1,600 tokens);
# local vision models take fewer. The budget's bound counts each image at this.
IMAGE_TOKENS_BOUND = 1600


@dataclass(frozen=True)
class Image:
    """An image in a message: base64 data with its media type (from a data: URL), or an http(s) URL that
    only backends which fetch images themselves can take (Anthropic, OpenAI-compatible)."""
    media_type: str = ""
    data: str = ""
    url: str = ""

    @property
    def digest(self) -> str:
        """What the cache key holds for the image: a hash, never the bytes."""
        return hashlib.sha256((self.data or self.url).encode()).hexdigest()


@dataclass(frozen=True)
class ToolCall:
    """A call the assistant made: its arguments as the JSON text (OpenAI's shape); `parsed` is the object
    (Anthropic's and Ollama's shape), None when the text is not a JSON object."""
    id: str
    name: str
    arguments: str = "{}"

    @cached_property
    def parsed(self) -> dict | None:
        try:
            value = json.loads(self.arguments or "{}")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict | None = None   # a JSON Schema object; None: the tool takes no arguments
    strict: bool = False


def object_schema(parameters: dict | None) -> dict:
    """A tool's parameters as every upstream takes them: a schema of type object (none: no arguments)."""
    if not parameters:
        return {"type": "object", "properties": {}}
    return parameters if "type" in parameters else {"type": "object", **parameters}


@dataclass(frozen=True)
class ResponseFormat:
    type: str                        # text | json_object | json_schema
    name: str = ""
    schema: dict | None = None
    strict: bool = False
    description: str = ""


@dataclass(frozen=True)
class Message:
    role: str
    content: str                     # the text (text parts joined); "" for an assistant turn of only calls
    images: tuple[Image, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()      # assistant: the calls it made
    tool_call_id: str | None = None            # tool: the call this result answers
    name: str | None = None                    # tool: the called tool's name (looked up from the call)
    is_error: bool = False                     # tool: the result is an error
    thinking: tuple[dict, ...] = ()            # assistant: Claude's own thinking blocks, given back to Claude only
    cache: str = ""                            # the client's prompt-cache mark after this message: "5m" or "1h"


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
    tools: tuple[Tool, ...] = ()
    tool_choice: str | None = None   # auto | none | required; None: the default (auto with tools)
    forced_tool: str | None = None   # tool_choice naming one tool: it must be called
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    # What only a backend of the client's own protocol takes as it is: {"body": {...}, "headers": {...}}
    # (the Messages surface's Claude-only fields and anthropic-* headers, for the Anthropic backend).
    passthrough: dict | None = None
    # Prompt caching (Anthropic): the client's own marks on the system prompt and the tools ("5m"/"1h"; a
    # message's is Message.cache), and whether the gateway may mark long prefixes itself. Neither changes the
    # answer: both stay out of the response cache's key.
    cache_system: str = ""
    cache_tools: str = ""
    prompt_cache: bool = True
    # X-Priority: how long it may wait for a busy local slot before it spills (gateway/dispatch.py)
    priority: str = "normal"

    @property
    def needs(self) -> frozenset[str]:
        """The capabilities a model must have to answer this request (CAPABILITIES)."""
        return self._traits().needs

    @property
    def image_urls(self) -> bool:
        """Some image is an http(s) URL: only backends that fetch images themselves can take it."""
        return self._traits().image_urls

    def _traits(self) -> _Traits:
        """Worked out once per request, on first use (no lock: any thread would find the same)."""
        found = self.__dict__.get("_traits_")
        if found is None:
            found = self.__dict__["_traits_"] = _traits(self)
        return found

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
        traits = self._traits()
        if traits.structured_bytes or traits.images:
            size += traits.structured_bytes + 64 * len(self.tools) + IMAGE_TOKENS_BOUND * traits.images
        return size + 16 * (len(self.messages) + 1)

    @property
    def input_tokens_estimate(self) -> int:
        """Rough token count of everything sent (about 4 characters a token), for cost and context fit."""
        chars = sum(len(m.content) for m in self.messages) + len(self.system or "")
        traits = self._traits()
        if traits.structured_bytes or traits.images:
            chars += traits.structured_bytes + 4 * IMAGE_TOKENS_BOUND * traits.images
        return max(1, -(-chars // 4))


@dataclass(frozen=True, slots=True)
class _Traits:
    needs: frozenset[str]
    image_urls: bool
    images: int
    structured_bytes: int   # tool schemas, calls in the history, a response schema: sent besides the text


_PLAIN = _Traits(frozenset(), False, 0, 0)


def _traits(request: ChatRequest) -> _Traits:
    images = urls = 0
    history_tools = False
    call_bytes = 0
    for m in request.messages:  # one pass; a plain message costs three attribute reads
        if m.images:
            images += len(m.images)
            urls += sum(1 for i in m.images if i.url)
        if m.tool_calls or m.role == "tool":
            history_tools = True
            call_bytes += sum(len(c.arguments) + len(c.name) + len(c.id) for c in m.tool_calls)
    fmt = request.response_format
    if not (images or history_tools or request.tools or fmt is not None):
        return _PLAIN
    needs = set()
    if (request.tools and request.tool_choice != "none") or history_tools:
        needs.add("tools")
    if images:
        needs.add("vision")
    if fmt is not None and fmt.type == "json_schema":
        needs.add("json_schema")
    size = call_bytes + sum(len(json.dumps(t.parameters or {})) + len(t.name) + len(t.description)
                            for t in request.tools)
    if fmt is not None and fmt.schema is not None:
        size += len(json.dumps(fmt.schema))
    return _Traits(frozenset(needs), urls > 0, images, size)


@dataclass(frozen=True)
class Usage:
    """Token counts of one call. input_tokens counts every input token; the cache counts are the parts of it
    the provider read from or wrote to its prompt cache (billed at their own prices: ModelSpec.usage_cost)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0       # written for the default lifetime (Anthropic: 5 minutes)
    cache_write_1h_tokens: int = 0    # written for an hour (a client's {"ttl": "1h"} mark)

    @property
    def cached(self) -> bool:
        return bool(self.cache_read_tokens or self.cache_write_tokens or self.cache_write_1h_tokens)


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage
    finish_reason: str = "stop"      # stop | length | tool_calls (normalised by every backend)
    # The sampled tokens' log-probabilities, when asked for and the backend reports them (cascade review).
    logprobs: tuple[float, ...] | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call: `index` tells calls apart; id and name come with a call's first
    piece, `arguments` is a fragment of its JSON text (all of it where the upstream sends calls whole)."""
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)  # not frozen: made once per token, and a frozen init costs twice as much
class StreamDelta:
    """One piece of a streamed answer; the last one carries usage and finish_reason."""
    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    logprobs: tuple[float, ...] | None = None  # this piece's tokens', when asked for and reported
    tool_calls: tuple[ToolCallDelta, ...] | None = None


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
    batch: bool = False                # answered through the provider's batch API, at its discount


class ToolCallBuilder:
    """Joins streamed tool-call pieces into whole calls, per index. A new id at an index already in use
    starts a new call (older Ollama parsers repeat index 0); a call without arguments gets "{}"."""

    def __init__(self):
        self._calls: list[list] = []     # [index, id, name, [argument pieces]]

    def add(self, piece: ToolCallDelta) -> None:
        for call in reversed(self._calls):
            if call[0] == piece.index and not (piece.id and call[1] and piece.id != call[1]):
                call[1] = call[1] or piece.id
                call[2] = call[2] or piece.name
                call[3].append(piece.arguments)
                return
        self._calls.append([piece.index, piece.id, piece.name, [piece.arguments]])

    def calls(self, make_id) -> tuple[ToolCall, ...]:
        """The whole calls; `make_id()` names a call the upstream gave no id."""
        return tuple(ToolCall(c[1] or make_id(), c[2] or "", "".join(c[3]) or "{}") for c in self._calls)


def new_call_id() -> str:
    """An id for a tool call the upstream named none (Ollama before 0.12.10): its own shape, call_ + 8."""
    return "call_" + secrets.token_hex(4)


@dataclass(frozen=True)
class EmbedRequest:
    """Texts to turn into vectors (/v1/embeddings, /api/v1/embed)."""
    inputs: tuple[str, ...]
    model: str = "auto"
    dimensions: int | None = None
    request_id: str = ""
    api_key_id: str | None = None

    @property
    def tokens_estimate(self) -> int:
        return sum(len(t) // 4 + 1 for t in self.inputs)

    @property
    def tokens_bound(self) -> int:
        return sum(len(t.encode()) + 1 for t in self.inputs)


@dataclass(frozen=True)
class EmbedOutcome:
    outcome: Outcome           # model, backend, usage (input tokens), cost, latency: what stats and logs read
    vectors: list[list[float]]
