"""The OpenAPI 3.1 description of every route, served at /openapi.json.

Built from the same constants the code validates with (strategies, roles, backends), and checked
against the app's URL map by a test, so it cannot drift silently.
"""

from __future__ import annotations

from functools import lru_cache

from .backends.errors import KINDS
from .catalog import BACKENDS
from .chat import CAPABILITIES, ROLES, STRATEGIES, TOOL_CHOICES

REF = "#/components/schemas/"


def _ref(name: str) -> dict:
    return {"$ref": REF + name}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int, openai: bool = False, anthropic: bool = False) -> dict:
    text = {400: "Malformed JSON, missing field or wrong type", 401: "Missing or invalid API key",
            403: "Forbidden", 404: "Unknown model, tier or route", 409: "The batch has ended: nothing to cancel",
            413: "Body or prompt too large",
            422: "A value out of range", 429: "Rate limit or budget reached (Retry-After)",
            502: "Every attempt failed on an upstream error", 503: "No backend could serve (Retry-After when known)",
            504: "Every attempt timed out"}
    schema = _ref("OpenAIError" if openai else "AnthropicError" if anthropic else "Error")
    return {str(s): _json(schema, text[s]) for s in statuses}


CHAT_ERRORS = (400, 401, 404, 413, 422, 429, 502, 503, 504)
OPEN = [{}]  # no authentication


def _schemas() -> dict:
    number, integer, string = {"type": "number"}, {"type": "integer"}, {"type": "string"}
    nullable_string = {"type": ["string", "null"]}
    return {
        "Error": {"type": "object", "required": ["error", "request_id"], "properties": {
            "error": {"type": "object", "required": ["type", "message"], "additionalProperties": True,
                      "properties": {"type": string, "message": string, "param": nullable_string,
                                     "attempts": {"type": "array", "items": _ref("Attempt")}}},
            "request_id": nullable_string}},
        "OpenAIError": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["message", "type", "param", "code"],
            "properties": {"message": string, "type": string, "param": nullable_string, "code": nullable_string}}}},
        "Message": {"type": "object", "required": ["role"], "properties": {
            "role": {"type": "string", "enum": [*ROLES, "developer", "function"]},
            "content": {"oneOf": [string, {"type": "null"}, {"type": "array", "items": _ref("ContentPart")}],
                        "description": "text, or parts: text and images (user messages); null on an assistant turn "
                                       "of tool calls only"},
            "tool_calls": {"type": "array", "items": _ref("ToolCall"), "description": "assistant: the calls it made"},
            "tool_call_id": {"type": "string", "description": "tool: the call this result answers (an earlier "
                                                               "assistant turn's)"},
            "name": string}},
        "ContentPart": {"oneOf": [
            {"type": "object", "required": ["type", "text"], "properties": {"type": {"const": "text"},
                                                                           "text": string}},
            {"type": "object", "required": ["type", "image_url"], "properties": {
                "type": {"const": "image_url"}, "image_url": {"oneOf": [string, {
                    "type": "object", "required": ["url"], "properties": {"url": string}}]}},
             "description": "a data: URL (image/jpeg, png, gif or webp, at most MAX_IMAGE_BYTES) or an http(s) URL "
                            "(taken by Claude and OpenAI-compatible upstreams, not by Ollama)"}]},
        "ToolCall": {"type": "object", "required": ["id", "function"], "properties": {
            "id": string, "type": {"const": "function"}, "function": {
                "type": "object", "required": ["name"], "properties": {
                    "name": string, "arguments": {"type": "string", "description": "JSON text"}}}}},
        "Tool": {"type": "object", "required": ["function"], "properties": {
            "type": {"const": "function"}, "function": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}, "description": string,
                "parameters": {"type": "object", "description": "a JSON Schema of type object"},
                "strict": {"type": "boolean"}}}}},
        "ToolChoice": {"oneOf": [{"type": "string", "enum": list(TOOL_CHOICES)}, {
            "type": "object", "required": ["function"], "properties": {
                "type": {"const": "function"}, "function": {"type": "object", "required": ["name"],
                                                            "properties": {"name": string}}}}]},
        "ResponseFormat": {"oneOf": [
            {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["text", "json_object"]}}},
            {"type": "object", "required": ["type", "json_schema"], "properties": {
                "type": {"const": "json_schema"}, "json_schema": {
                    "type": "object", "required": ["schema"], "properties": {
                        "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}, "description": string,
                        "schema": {"type": "object"}, "strict": {"type": "boolean"}}}}}]},
        "ChatRequest": {"type": "object", "properties": {
            "prompt": {"type": "string", "pattern": r"\S"},
            "messages": {"type": "array", "minItems": 1, "items": _ref("Message"),
                         "contains": {"properties": {"role": {"const": "user"}, "content": {"pattern": r"\S"}}}},
            "model": {"type": "string", "description": "auto, a tier or a model name", "default": "auto"},
            "strategy": {"type": "string", "enum": list(STRATEGIES)},
            "system": string, "max_tokens": {"type": "integer", "minimum": 1, "maximum": 32768},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "stop": {"oneOf": [string, {"type": "array", "items": string, "maxItems": 4}]},
            "dry_run": {"type": "boolean", "default": False}, "stream": {"type": "boolean", "default": False},
            "prompt_cache": {"type": "boolean", "default": True,
                             "description": "false: no prompt-cache marks on this request (Claude)"},
            "tools": {"type": "array", "items": _ref("Tool"), "maxItems": 128},
            "tool_choice": _ref("ToolChoice"), "parallel_tool_calls": {"type": "boolean"},
            "response_format": _ref("ResponseFormat"),},
            "oneOf": [{"required": ["prompt"], "not": {"required": ["messages"]}},
                      {"required": ["messages"], "not": {"required": ["prompt"]}}],
            "description": "Give `prompt` or `messages` (with at least one user message), not both."},
        "Usage": {"type": "object", "required": ["input_tokens", "output_tokens"],
                  "properties": {"input_tokens": integer, "output_tokens": integer}},
        "Choice": {"type": "object", "required": ["model", "backend", "tier", "estimated_cost"], "properties": {
            "model": string, "backend": {"type": "string", "enum": list(BACKENDS)}, "tier": string,
            "estimated_cost": number}},
        "Attempt": {"type": "object", "required": ["model", "backend", "outcome"], "properties": {
            "model": string, "backend": string,
            "outcome": {"type": "string", "enum": ["ok", "error", "skipped", "rejected"]},
            "error_type": {"type": "string", "description": "one of: " + ", ".join(
                [*KINDS, "circuit_open", "budget_exceeded", "budget_unguarded", "concurrency_cap", "cascade_review",
                 "paid_fallback_refused", "invalid_answer"])},
            "status": integer, "latency_seconds": number, "detail": string,
            "cost": {"type": "number", "description": "USD charged for a failed paid try the upstream may have "
                     "billed (gateway/billing.py)"},
            "mean_logprob": {"type": "number", "description": "strategy cascade: the local answer's mean token "
                             "log-probability, when its backend reports log-probabilities"}}},
        "Routing": {"type": "object", "required": ["complexity", "tier", "strategy", "reason", "factors"],
                    "properties": {"complexity": number, "tier": string, "strategy": string, "reason": string,
                                   "factors": {"type": "object", "additionalProperties": number},
                                   "estimated_cost": number,
                                   "alternatives": {"type": "array", "items": _ref("Choice")},
                                   "attempts": {"type": "array", "items": _ref("Attempt")}}},
        "ChatResponse": {"type": "object", "required": ["request_id", "model", "backend", "usage", "cost", "routing"],
                         "properties": {"request_id": string, "model": string,
                                        "backend": {"type": "string", "enum": list(BACKENDS)},
                                        "response": string, "finish_reason": string, "usage": _ref("Usage"),
                                        "tool_calls": {"type": "array", "items": _ref("ToolCall")},
                                        "cost": number, "routing": _ref("Routing"), "latency_seconds": number,
                                        "cached": {"type": "boolean"}}},
        "DryRunResponse": {"type": "object", "required": ["request_id", "dry_run", "model", "backend", "routing"],
                           "properties": {"request_id": string, "dry_run": {"const": True}, "model": string,
                                          "backend": {"type": "string", "enum": list(BACKENDS)},
                                          "routing": _ref("Routing")}},
        "ComplexityResponse": {"type": "object", "required": ["complexity", "factors", "recommended"], "properties": {
            "request_id": string, "complexity": number, "factors": {"type": "object"},
            "recommended": {"type": "object"}, "estimated_cost": number, "reason": string,
            "alternatives": {"type": "array", "items": _ref("Choice")}}},
        "ModelsResponse": {"type": "object", "required": ["models"], "properties": {
            "models": {"type": "array", "items": {"type": "object", "required": [
                "name", "backend", "tier", "available", "warm", "circuit", "price_in_per_mtok", "price_out_per_mtok"],
                "properties": {"capabilities": {"type": "array", "items": {"enum": list(CAPABILITIES)}}}}},
            "prices_as_of": string, "deployment_tier": integer}},
        "StatsResponse": {"type": "object", "required": ["requests", "local_share"], "additionalProperties": True},
        "BudgetResponse": {"type": "object", "required": [
            "month", "limit_usd", "spent_usd", "reserved_usd", "remaining_usd", "soft_limit_reached"], "properties": {
            "month": string, "limit_usd": {"type": ["number", "null"]}, "spent_usd": number,
            "reserved_usd": number, "remaining_usd": {"type": ["number", "null"]},
            "soft_limit_reached": {"type": "boolean"}, "key": string}},
        "DecisionsResponse": {"type": "object", "required": ["decisions"], "properties": {
            "decisions": {"type": "array", "description": "newest first", "items": {"type": "object", "properties": {
                "time": string, "request_id": string, "key_id": string, "strategy": string, "score": number,
                "decided_tier": string, "decided_model": string, "reason": string, "tier": string, "model": string,
                "backend": string, "cost": number, "latency_seconds": number, "cached": {"type": "boolean"},
                "fallback": {"type": "boolean"}, "attempts": integer, "local_mean_logprob": number,
                "error": string, "id": string, "needs": {"type": "array", "items": string},
                "excluded_for": {"type": "array", "items": string}, "tool_calls": integer,
                "router_version": string, "batch": {"type": "boolean"}, "cache_read_tokens": integer,
                "cache_write_tokens": integer},
                "additionalProperties": False}}}},
        "FeedbackRequest": {"type": "object", "required": ["request_id"], "additionalProperties": False,
                            "properties": {
            "request_id": string, "score": {"type": "number", "minimum": 0, "maximum": 1},
            "label": {"type": "string", "enum": ["good", "bad"]},
            "preferred": {"type": "string", "enum": ["local", "cloud"]},
            "comment": {"type": "string", "maxLength": 2000}}},
        "FeedbackResponse": {"type": "object", "required": ["request_id", "accepted", "replaced", "learned_from"],
                             "properties": {"request_id": string, "accepted": {"type": "boolean"},
                                            "replaced": {"type": "boolean"}, "learned_from": {"type": "boolean"},
                                            "answered_by": string, "label": {"type": "object"}, "note": string}},
        "CalibrationResponse": {"type": "object", "required": ["version", "labels", "threshold", "history"],
                                "properties": {
            "router": string, "target_quality": {"type": ["number", "null"]}, "version": string,
            "refits_held": {"type": "boolean"}, "labels": {"type": "object"}, "threshold": {"type": "object"},
            "estimate": {"type": ["object", "null"]}, "by_cluster": {"type": "object"},
            "drift": {"type": ["object", "null"]}, "history": {"type": "array", "items": {"type": "object"}},
            "shadow": {"type": "object"}}},
        "GpuResponse": {"type": "object", "required": ["source", "gpus"], "properties": {
            "source": {"type": "string", "enum": ["nvml", "nvidia-smi", "none"]}, "detail": string,
            "sampled_at": number, "gpus": {"type": "array", "items": {"type": "object"}}}},
        "ChatCompletionRequest": {"type": "object", "required": ["messages"], "properties": {
            "model": {"type": "string", "default": "auto"},
            "messages": {"type": "array", "minItems": 1, "items": _ref("Message")},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "max_tokens": {"type": "integer", "minimum": 1}, "max_completion_tokens": {"type": "integer", "minimum": 1},
            "stop": {"oneOf": [string, {"type": "array", "items": string, "maxItems": 4}]},
            "stream": {"type": "boolean"}, "stream_options": {"type": "object", "properties": {
                "include_usage": {"type": "boolean"}}},
            "user": string, "strategy": {"type": "string", "enum": list(STRATEGIES)},
            "tools": {"type": "array", "items": _ref("Tool"), "maxItems": 128},
            "tool_choice": _ref("ToolChoice"), "parallel_tool_calls": {"type": "boolean"},
            "response_format": _ref("ResponseFormat"),
            "functions": {"type": "array", "deprecated": True, "items": {"type": "object", "required": ["name"]}},
            "function_call": {"deprecated": True, "oneOf": [{"type": "string", "enum": list(TOOL_CHOICES)}, {
                "type": "object", "required": ["name"], "properties": {"name": string}}]}}},
        "ChatCompletion": {"type": "object", "required": ["id", "object", "created", "model", "choices", "usage"],
                           "properties": {"id": string, "object": {"const": "chat.completion"}, "created": integer,
                                          "model": string, "choices": {"type": "array"}, "usage": {
                                              "type": "object",
                                              "required": ["prompt_tokens", "completion_tokens", "total_tokens"]}}},
        "Model": {"type": "object", "required": ["id", "object", "created", "owned_by"], "properties": {
            "id": string, "object": {"const": "model"}, "created": integer, "owned_by": string}},
        "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
            "object": {"const": "list"}, "data": {"type": "array", "items": _ref("Model")}}},
        "AnthropicError": {"type": "object", "required": ["type", "error"], "properties": {
            "type": {"const": "error"}, "error": {"type": "object", "required": ["type", "message"],
                                                  "properties": {"type": string, "message": string}},
            "request_id": nullable_string}},
        "MessagesRequest": {"type": "object", "required": ["model", "messages", "max_tokens"], "properties": {
            "model": {"type": "string", "description": "a Claude model name (mapped by claude_names in "
                                                       "configs/models.yaml), auto, a tier or a model"},
            "max_tokens": {"type": "integer", "minimum": 1, "description": "above MAX_OUTPUT_TOKENS: lowered to it"},
            "messages": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["role"], "properties": {"role": {"enum": ["user", "assistant"]},
                "content": {"oneOf": [string, {"type": "array", "items": {
                    "type": "object", "required": ["type"], "properties": {"type": string}}}]}}}},
            "system": {"oneOf": [string, {"type": "array", "items": {"type": "object", "required": ["type"],
                                                                     "properties": {"type": string}}}]},
            "tools": {"type": "array", "items": {"type": "object", "required": ["name", "input_schema"], "properties": {
                "name": string, "description": string, "input_schema": {"type": "object"},
                "type": {"const": "custom"}}}},
            "tool_choice": {"type": "object", "required": ["type"], "properties": {
                "type": {"enum": ["auto", "any", "tool", "none"]}, "name": string,
                "disable_parallel_tool_use": {"type": "boolean"}}},
            "stop_sequences": {"type": "array", "items": string}, "stream": {"type": "boolean"},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "output_config": {"type": "object"}}},
        "CountTokensRequest": {"type": "object", "required": ["model", "messages"], "properties": {
            "model": string, "messages": {"type": "array", "minItems": 1}}},
        "MessagesResponse": {"type": "object", "required": ["id", "type", "role", "model", "content", "stop_reason",
                                                            "usage"], "properties": {
            "id": string, "type": {"const": "message"}, "role": {"const": "assistant"}, "model": string,
            "content": {"type": "array", "items": {"type": "object", "required": ["type"]}},
            "stop_reason": {"enum": ["end_turn", "max_tokens", "stop_sequence", "tool_use"]},
            "usage": {"type": "object", "required": ["input_tokens", "output_tokens"]}}},
        "ResponsesRequest": {"type": "object", "required": ["input"], "properties": {
            "model": {"type": "string", "default": "auto"},
            "input": {"oneOf": [string, {"type": "array", "minItems": 1, "items": {"type": "object"}}],
                      "description": "a string, or message / function_call / function_call_output items"},
            "instructions": string, "max_output_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2}, "stream": {"type": "boolean"},
            "store": {"type": "boolean", "description": "accepted; nothing is stored"},
            "tools": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                "type": {"const": "function"}, "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                "description": string, "parameters": {"type": "object"}, "strict": {"type": "boolean"}}}},
            "tool_choice": {"oneOf": [{"enum": list(TOOL_CHOICES)}, {"type": "object", "required": ["type", "name"],
                                                                    "properties": {"type": {"const": "function"},
                                                                                   "name": string}}]},
            "parallel_tool_calls": {"type": "boolean"},
            "text": {"type": "object", "properties": {"format": {"type": "object"}}},
            "previous_response_id": {"type": "string", "description": "refused: 400 previous_response_not_found "
                                                                      "(responses are not stored)"}}},
        "ResponseObject": {"type": "object", "required": ["id", "object", "created_at", "model", "status", "output"],
                           "properties": {"id": string, "object": {"const": "response"}, "created_at": integer,
                                          "model": string, "status": string, "output": {"type": "array"},
                                          "usage": {"type": ["object", "null"]}}},
        "EmbeddingsRequest": {"type": "object", "required": ["input"], "properties": {
            "input": {"oneOf": [string, {"type": "array", "minItems": 1, "maxItems": 2048, "items": string}]},
            "model": {"type": "string", "default": "auto", "description": "auto or an embedding model"},
            "encoding_format": {"enum": ["float", "base64"], "default": "float"},
            "dimensions": {"type": "integer", "minimum": 1, "maximum": 65536}, "user": string}},
        "EmbedRequest": {"type": "object", "required": ["input"], "properties": {
            "input": {"oneOf": [string, {"type": "array", "minItems": 1, "maxItems": 2048, "items": string}]},
            "model": string, "dimensions": {"type": "integer", "minimum": 1, "maximum": 65536}}},
        "EmbeddingList": {"type": "object", "required": ["object", "data", "model", "usage"], "properties": {
            "object": {"const": "list"}, "model": string, "usage": {"type": "object"},
            "data": {"type": "array", "items": {"type": "object", "required": ["object", "index", "embedding"]}}}},
        "EmbedResponse": {"type": "object", "required": ["model", "backend", "embeddings", "usage"], "properties": {
            "request_id": string, "model": string, "backend": {"enum": list(BACKENDS)}, "cost": number,
            "embeddings": {"type": "array", "items": {"type": "array", "items": number}},
            "usage": {"type": "object"}, "latency_seconds": number}},
        "File": {"type": "object", "required": ["id", "object", "bytes", "created_at", "filename", "purpose"],
                 "properties": {"id": string, "object": {"type": "string", "enum": ["file"]}, "bytes": integer,
                                "created_at": integer, "filename": string, "purpose": string,
                                "expires_at": integer, "status": string}},
        "Batch": {"type": "object", "required": ["id", "object", "endpoint", "input_file_id", "completion_window",
                                                 "status", "created_at"], "properties": {
            "id": string, "object": {"type": "string", "enum": ["batch"]}, "endpoint": string,
            "input_file_id": string, "completion_window": string,
            "status": {"type": "string", "enum": ["validating", "in_progress", "finalizing", "completed", "failed",
                                                  "expired", "cancelling", "cancelled"]},
            "output_file_id": {"type": ["string", "null"]}, "error_file_id": {"type": ["string", "null"]},
            "created_at": integer, "request_counts": {"type": "object", "properties": {
                "total": integer, "completed": integer, "failed": integer}},
            "metadata": {"type": ["object", "null"]}}},
        "BatchRequest": {"type": "object", "required": ["input_file_id", "endpoint", "completion_window"],
                         "properties": {"input_file_id": string,
                                        "endpoint": {"type": "string", "enum": ["/v1/chat/completions"]},
                                        "completion_window": {"type": "string", "enum": ["24h"]},
                                        "metadata": {"type": "object"}}},
        "Ready": {"type": "object", "required": ["status", "backends"], "properties": {
            "status": {"type": "string", "enum": ["ready", "unavailable"]}, "backends": {"type": "object"},
            "degraded": {"type": "array", "items": string}, "redis": {"type": "object"}}},
    }


def _op(summary: str, responses: dict, body: str | None = None, security=None, params=None) -> dict:
    op: dict = {"summary": summary, "responses": responses}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if security is not None:
        op["security"] = security
    if params:
        op["parameters"] = params
    return op


@lru_cache(maxsize=1)
def spec() -> dict:
    # One Server-Sent Event: `event` names it on the native surface, `data` is JSON (or "[DONE]").
    sse = {"text/event-stream": {"schema": {"type": "object", "required": ["data"], "properties": {
        "event": {"type": "string", "description": "native: start, delta, tool_call, done, error; Messages: "
                  "Anthropic's event names"}, "data": {"type": "string"},
        "id": {"type": "string"}, "retry": {"type": "integer"}}}}}
    chat_ok = {"description": "The answer (JSON; the decision only with `dry_run: true`), or Server-Sent "
                              "Events with `stream: true`",
               "content": {"application/json": {"schema": {"oneOf": [_ref("ChatResponse"), _ref("DryRunResponse")]}},
                           **sse}}
    completion_ok = {"description": "A chat.completion, or chat.completion.chunk events with `stream: true`",
                     "content": {"application/json": {"schema": _ref("ChatCompletion")}, **sse}}
    query = lambda name, schema, text: {"name": name, "in": "query", "required": False,  # noqa: E731
                                        "schema": schema, "description": text}
    string, integer = {"type": "string"}, {"type": "integer"}
    file_id = {"name": "file_id", "in": "path", "required": True, "schema": string}
    batch_id = {"name": "batch_id", "in": "path", "required": True, "schema": string}
    paths = {
        "/api/v1/chat": {"post": _op("Answer through the smart router (or dry_run: the decision only)",
                                     {"200": chat_ok, **_errors(*CHAT_ERRORS)}, "ChatRequest")},
        "/api/v1/complexity": {"post": _op("Score a prompt and recommend a model; calls no model",
                                           {"200": _json(_ref("ComplexityResponse"), "The decision"),
                                            **_errors(400, 401, 404, 413, 422, 503)}, "ChatRequest")},
        "/api/v1/models": {"get": _op("Every configured model with availability, warmth, circuit and prices",
                                      {"200": _json(_ref("ModelsResponse"), "Models"), **_errors(401)})},
        "/api/v1/stats": {"get": _op("Counts, local share, cache, spend this month, savings, budget: every key's "
                                     "for an admin key, the caller's own for any other",
                                     {"200": _json(_ref("StatsResponse"), "Statistics"), **_errors(401, 503)})},
        "/api/v1/budget": {"get": _op("The month's budget, global or one key's own (any other key: its own only)",
                                      {"200": _json(_ref("BudgetResponse"), "Budget"), **_errors(401, 403, 422, 503)},
                                      params=[query("key", {"type": "string", "pattern": "^[0-9a-f]{12}$"},
                                                    "a key id (12 hex characters)")])},
        "/api/v1/decisions": {"get": _op("The newest routing decisions: every key's for an admin key, the "
                                         "caller's own for any other",
                                         {"200": _json(_ref("DecisionsResponse"), "Decisions"),
                                          **_errors(401, 422, 503)},
                                         params=[query("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                                                       "how many (default 100)")])},
        "/api/v1/feedback": {"post": _op("Rate an answer of the caller's own (a score, good/bad, or which side "
                                         "should have answered): the learning router's labels",
                                         {"200": _json(_ref("FeedbackResponse"), "Kept"),
                                          **_errors(400, 401, 404, 422, 503)}, "FeedbackRequest")},
        "/api/v1/calibration": {"get": _op("The learning router: labels, estimated quality and cloud share, the "
                                           "threshold in force and its history, the version (admin keys)",
                                           {"200": _json(_ref("CalibrationResponse"), "Calibration"),
                                            **_errors(401, 403, 503)})},
        "/api/v1/gpu": {"get": _op("GPUs seen by the gateway",
                                   {"200": _json(_ref("GpuResponse"), "GPU report"), **_errors(401)})},
        "/v1/chat/completions": {"post": _op("OpenAI-compatible chat completions",
                                             {"200": completion_ok, **_errors(*CHAT_ERRORS, openai=True)},
                                             "ChatCompletionRequest")},
        "/v1/messages": {"post": _op("The Anthropic Messages API (Claude Code, the anthropic SDK); the query string "
                                     "(?beta=true) is ignored", {"200": {
                                         "description": "A message, or Anthropic's named events with `stream: true`",
                                         "content": {"application/json": {"schema": _ref("MessagesResponse")}, **sse}},
                                         **_errors(*CHAT_ERRORS, anthropic=True)}, "MessagesRequest")},
        "/v1/messages/count_tokens": {"post": _op("Input tokens of a Messages request: Anthropic's count for Claude, "
                                                  "an estimate otherwise (X-Gateway-Count)", {
            "200": _json({"type": "object", "required": ["input_tokens"],
                          "properties": {"input_tokens": {"type": "integer"}}}, "The count"),
            **_errors(400, 401, 404, 413, 422, 503, anthropic=True)},
            "CountTokensRequest")},
        "/v1/responses": {"post": _op("The OpenAI Responses API (n8n's OpenAI Chat Model node, the openai SDK, "
                                      "LangChain's use_responses_api); nothing is stored", {
            "200": {"description": "A response, or its typed events with `stream: true`",
                    "content": {"application/json": {"schema": _ref("ResponseObject")}, **sse}},
            **_errors(*CHAT_ERRORS, openai=True)}, "ResponsesRequest")},
        "/v1/embeddings": {"post": _op("OpenAI-compatible embeddings from a configured embedding model", {
            "200": _json(_ref("EmbeddingList"), "One vector per input, in order"),
            **_errors(400, 401, 404, 413, 422, 429, 502, 503, 504, openai=True)}, "EmbeddingsRequest")},
        "/api/v1/embed": {"post": _op("Embeddings, native shape", {
            "200": _json(_ref("EmbedResponse"), "One vector per input, in order"),
            **_errors(400, 401, 404, 413, 422, 429, 502, 503, 504)}, "EmbedRequest")},
        "/v1/files": {
            "post": {"summary": "Upload a batch input file (JSONL of {custom_id, method, url, body}); multipart "
                                "fields `file` and `purpose: batch`",
                     "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                         "type": "object", "required": ["file", "purpose"], "properties": {
                             "file": {"type": "string", "format": "binary"}, "purpose": {"type": "string"}}}}}},
                     "responses": {"200": _json(_ref("File"), "The file"),
                                   **_errors(400, 401, 413, 422, 503, openai=True)}},
            "get": _op("The caller's files", {"200": _json({"type": "object"}, "A list of files"),
                                              **_errors(401, 503, openai=True)})},
        "/v1/files/{file_id}": {
            "get": _op("One of the caller's files", {"200": _json(_ref("File"), "The file"),
                                                     **_errors(401, 404, 503, openai=True)}, params=[file_id]),
            "delete": _op("Delete one of the caller's files", {"200": _json({"type": "object"}, "Deleted"),
                                                               **_errors(401, 404, 503, openai=True)},
                          params=[file_id])},
        "/v1/files/{file_id}/content": {"get": _op("A file's bytes (a batch's output or error JSONL)", {
            "200": {"description": "The bytes", "content": {"application/octet-stream": {"schema": {
                "type": "string", "format": "binary"}}}}, **_errors(401, 404, 503, openai=True)}, params=[file_id])},
        "/v1/batches": {
            "post": _op("Run a file of chat requests in the background: local lines locally, Claude lines as one "
                        "Message Batch at half price", {"200": _json(_ref("Batch"), "The batch"),
                                                        **_errors(400, 401, 404, 422, 503, openai=True)},
                        "BatchRequest"),
            "get": _op("The caller's batches, newest first", {"200": _json({"type": "object"}, "A list of batches"),
                                                              **_errors(401, 422, 503, openai=True)},
                       params=[query("limit", integer, "1-100, default 20"),
                               query("after", string, "a batch id: the page after it")])},
        "/v1/batches/{batch_id}": {"get": _op("One of the caller's batches", {
            "200": _json(_ref("Batch"), "The batch"), **_errors(401, 404, 503, openai=True)}, params=[batch_id])},
        "/v1/batches/{batch_id}/cancel": {"post": _op("Cancel a batch: lines not run go to the error file", {
            "200": _json(_ref("Batch"), "The batch, cancelling"), **_errors(401, 404, 409, 503, openai=True)},
            params=[batch_id])},
        "/v1/models": {"get": _op("OpenAI-compatible model list: auto, the tiers, the models",
                                  {"200": _json(_ref("ModelList"), "Models"), **_errors(401, openai=True)})},
        "/v1/models/{model_id}": {"get": _op("One model, tier or auto", {
            "200": _json(_ref("Model"), "The model"), **_errors(401, 404, openai=True)},
            params=[{"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}])},
        "/health": {"get": _op("Liveness; no upstream calls", {"200": _json({"type": "object"}, "Alive")},
                               security=OPEN)},
        "/health/ready": {"get": _op("Readiness with per-backend state",
                                     {"200": _json(_ref("Ready"), "Ready"), "503": _json(_ref("Ready"), "Not ready")},
                                     security=OPEN)},
        "/metrics": {"get": _op("Prometheus metrics (METRICS_TOKEN, or METRICS_TRUSTED_NETWORKS)", {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors(401, 403)}, security=[{"metricsToken": []}, {}])},
        "/openapi.json": {"get": _op("This description", {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                                     security=OPEN)},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Hybrid AI Stack gateway", "version": "0.1.0",
                 "description": "Routes each request to the cheapest model that can answer it well."},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "one of GATEWAY_API_KEYS or GATEWAY_ADMIN_KEYS"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "metricsToken": {"type": "http", "scheme": "bearer", "description": "METRICS_TOKEN"},
            },
        },
    }
