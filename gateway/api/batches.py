"""The OpenAI Batch API subset the `openai` SDK uses: /v1/files (purpose batch) and /v1/batches.

    client.files.create(file=open("lines.jsonl", "rb"), purpose="batch")
    client.batches.create(input_file_id=..., endpoint="/v1/chat/completions", completion_window="24h")
    client.batches.retrieve(id) / .list() / .cancel(id);  client.files.content(output_file_id)

Files and batches belong to the key that made them: another key gets 404, as for an id that does not exist.
The work itself runs in the background (gateway/batch_runner.py).
"""

from __future__ import annotations

import secrets
import time

from flask import Blueprint, current_app, g, jsonify, request

from ..errors import BadRequest, GatewayError, InvalidParameter, NotFound, PayloadTooLarge, ServiceUnavailable
from ..state.batches import BatchStore
from .validate import json_object, typed

bp = Blueprint("batches", __name__, url_prefix="/v1")
_PRIVATE = ("owner", "upstream", "upstream_done", "upstream_cancelled", "cloud_lines", "reservation")
ENDPOINTS = ("/v1/chat/completions",)


class Conflict(GatewayError):
    status, type = 409, "conflict"


def _store() -> BatchStore:
    store = current_app.extensions.get("batches")
    if store is None:
        raise ServiceUnavailable("batches are off on this gateway: set BATCH_DIR (a volume that survives restarts)",
                                 error_type="batches_disabled")
    return store


def _owner() -> str:
    return g.api_key_id or ""


def _public(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in _PRIVATE}


# ------------------------------------------------------------------ files
@bp.post("/files")
def upload_file():
    store = _store()
    settings = current_app.extensions["gateway"].settings
    request.max_content_length = settings.batch_max_file_bytes + 65_536  # the multipart framing around it
    purpose = request.form.get("purpose")
    if purpose != "batch":
        raise InvalidParameter(f"purpose: only 'batch' is supported, got {str(purpose)[:40]!r}", param="purpose")
    upload = request.files.get("file")
    if upload is None:
        raise BadRequest("file: a multipart file field is required", param="file")
    data = upload.read(settings.batch_max_file_bytes + 1)
    if len(data) > settings.batch_max_file_bytes:
        raise PayloadTooLarge(f"file is larger than BATCH_MAX_FILE_BYTES ({settings.batch_max_file_bytes})",
                              param="file")
    if not data.strip():
        raise BadRequest("file: the file is empty", param="file")
    name = (upload.filename or "batch.jsonl")[:200]
    rec = store.add_file(_owner(), name, purpose, data, settings.batch_file_ttl_days * 86400)
    return jsonify(_public(rec))


def _owned(kind: str, rid: str) -> dict:
    """A file or batch of the caller's: another key's is as absent as a missing one (404)."""
    store = _store()
    rec = store.file(rid, _owner()) if kind == "file" else store.batch(rid, _owner())
    if rec is None:
        raise NotFound(f"no {kind} {rid[:64]!r}", param=f"{kind}_id")
    return rec


@bp.get("/files")
def list_files():
    recs = _store().records.owned("file", _owner())
    purpose = request.args.get("purpose")
    return jsonify({"object": "list", "data": [_public(r) for r in recs if not purpose or r["purpose"] == purpose],
                    "has_more": False})


@bp.get("/files/<file_id>")
def get_file(file_id: str):
    return jsonify(_public(_owned("file", file_id)))


@bp.get("/files/<file_id>/content")
def file_content(file_id: str):
    rec = _owned("file", file_id)
    data = _store().file_path(rec["id"]).read_bytes()
    return current_app.response_class(data, mimetype="application/octet-stream")


@bp.delete("/files/<file_id>")
def delete_file(file_id: str):
    rec = _owned("file", file_id)
    _store().delete_file(rec["id"])
    return jsonify({"id": rec["id"], "object": "file", "deleted": True})


# ------------------------------------------------------------------ batches
@bp.post("/batches")
def create_batch():
    store = _store()
    body = json_object()
    file_id = typed(body, "input_file_id", str, "a string")
    if not file_id:
        raise BadRequest("input_file_id: Field required", param="input_file_id")
    source = store.file(file_id, _owner())
    if source is None or source["purpose"] != "batch":
        raise NotFound(f"no batch input file {file_id[:64]!r}", param="input_file_id")
    endpoint = typed(body, "endpoint", str, "a string")
    if endpoint not in ENDPOINTS:
        raise InvalidParameter(f"endpoint: only {', '.join(ENDPOINTS)} is supported", param="endpoint")
    if typed(body, "completion_window", str, "a string") != "24h":
        raise InvalidParameter("completion_window: only '24h' is supported", param="completion_window")
    metadata = typed(body, "metadata", dict, "an object") or {}
    if len(metadata) > 16 or not all(isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
                                     for k, v in metadata.items()):
        raise InvalidParameter("metadata: at most 16 string pairs (keys up to 64 characters, values 512)",
                               param="metadata")
    now = int(time.time())
    rec = {"id": "batch_" + secrets.token_hex(12), "object": "batch", "endpoint": endpoint, "errors": None,
           "input_file_id": file_id, "completion_window": "24h", "status": "validating", "output_file_id": None,
           "error_file_id": None, "created_at": now, "in_progress_at": None, "expires_at": now + 86_400,
           "finalizing_at": None, "completed_at": None, "failed_at": None, "expired_at": None,
           "cancelling_at": None, "cancelled_at": None, "request_counts": {"total": 0, "completed": 0, "failed": 0},
           "metadata": metadata or None, "owner": _owner()}
    store.save(rec)
    current_app.extensions["batch_runner"].wake()
    return jsonify(_public(rec))


@bp.get("/batches/<batch_id>")
def get_batch(batch_id: str):
    return jsonify(_public(_owned("batch", batch_id)))


@bp.get("/batches")
def list_batches():
    limit = request.args.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise InvalidParameter("limit: an integer from 1 to 100", param="limit")
    recs = _store().batches(_owner())
    after = request.args.get("after")
    if after:
        ids = [r["id"] for r in recs]
        recs = recs[ids.index(after) + 1:] if after in ids else []
    page = recs[:int(limit)]
    return jsonify({"object": "list", "data": [_public(r) for r in page],
                    "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None,
                    "has_more": len(recs) > len(page)})


@bp.post("/batches/<batch_id>/cancel")
def cancel_batch(batch_id: str):
    rec = _owned("batch", batch_id)
    if rec["status"] in ("validating", "in_progress", "finalizing"):
        _store().cancel(rec)
        rec = _owned("batch", batch_id)
        current_app.extensions["batch_runner"].wake()
    elif rec["status"] != "cancelling":
        raise Conflict(f"cannot cancel a batch with status {rec['status']!r}")
    return jsonify(_public(rec))
