"""Embeddings: POST /v1/embeddings (OpenAI's shape; the openai SDK, LangChain's OpenAIEmbeddings) and the
native POST /api/v1/embed, answered by an embedding model of configs/models.yaml (Ollama's /api/embed, or an
OpenAI-compatible upstream), with the key limits, breaker, spend and stats chat has.

`encoding_format: base64` is the vector's little-endian float32 bytes in base64: the openai SDK asks for it
unless told otherwise, and decodes it so.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from flask import Blueprint, current_app, g, jsonify

from ..chat import EmbedRequest
from ..errors import BadRequest, InvalidParameter, PayloadTooLarge
from ..service import GatewayService
from .validate import json_object, typed

openai_bp = Blueprint("embeddings", __name__, url_prefix="/v1")
native_bp = Blueprint("embed", __name__, url_prefix="/api/v1")
MAX_INPUTS = 2048  # OpenAI's own limit per request; LangChain sends 1,000 at a time


def _service() -> GatewayService:
    return current_app.extensions["gateway"]


def _inputs(value: Any, max_chars: int) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise BadRequest("'input' must be a string or a non-empty list of strings", param="input")
    if not all(isinstance(v, str) for v in value):
        if all(isinstance(v, int | list) and not isinstance(v, bool) for v in value):
            raise InvalidParameter("'input' as token ids is not supported: send the text", param="input")
        raise BadRequest("'input' must be a string or a list of strings", param="input")
    if len(value) > MAX_INPUTS:
        raise InvalidParameter(f"'input' takes at most {MAX_INPUTS} texts per request, got {len(value)}",
                               param="input")
    for i, text in enumerate(value):
        if not text.strip():
            raise InvalidParameter(f"input[{i}] is empty", param=f"input[{i}]")
        if len(text) > max_chars:
            raise PayloadTooLarge(f"input[{i}] is {len(text)} characters; the limit is {max_chars} (MAX_PROMPT_CHARS)",
                                  error_type="prompt_too_large", param=f"input[{i}]")
    return tuple(value)


def _request(body: dict, svc: GatewayService) -> EmbedRequest:
    dimensions = typed(body, "dimensions", int, "an integer")
    if dimensions is not None and not 1 <= dimensions <= 65536:
        raise InvalidParameter(f"'dimensions' must be between 1 and 65536, got {dimensions}", param="dimensions")
    typed(body, "user", str, "a string")
    return EmbedRequest(_inputs(body.get("input"), svc.settings.max_prompt_chars),
                        typed(body, "model", str, "a string: 'auto' or an embedding model") or "auto",
                        dimensions, g.request_id, g.api_key_id)


@openai_bp.post("/embeddings")
def embeddings():
    svc = _service()
    body = json_object()
    encoding = typed(body, "encoding_format", str, "a string") or "float"
    if encoding not in ("float", "base64"):
        raise InvalidParameter(f"'encoding_format' must be float or base64, got {encoding[:20]!r}",
                               param="encoding_format")
    done = svc.embed(_request(body, svc))
    g.outcome = done.outcome
    tokens = done.outcome.completion.usage.input_tokens
    return jsonify({"object": "list", "model": done.outcome.model, "usage": {"prompt_tokens": tokens,
                                                                             "total_tokens": tokens},
                    "data": [{"object": "embedding", "index": i, "embedding": _encoded(v, encoding)}
                             for i, v in enumerate(done.vectors)]})


@native_bp.post("/embed")
def embed():
    svc = _service()
    done = svc.embed(_request(json_object(), svc))
    out = g.outcome = done.outcome
    return jsonify({"request_id": out.request_id, "model": out.model, "backend": out.backend,
                    "embeddings": done.vectors, "usage": {"input_tokens": out.completion.usage.input_tokens},
                    "cost": out.cost, "latency_seconds": out.latency_seconds})


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
