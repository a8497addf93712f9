"""The learning router's two routes under /api/v1 (gateway/calibration/):

  POST /api/v1/feedback     {request_id, score 0..1 | label good|bad | preferred local|cloud, comment?}
  GET  /api/v1/calibration  labels, estimate, threshold in force and its history, version (admin keys)

Feedback is for the caller's own requests, admin keys included: another key's request id, an unknown one and
an expired one all answer the same 404, so a key cannot learn which ids exist (records are kept under the key:
X-Request-ID is the client's to choose, and two keys sending the same id never touch each other's). Posting
again replaces the request's one label.
"""

from __future__ import annotations

import math

from flask import Blueprint, current_app, g, jsonify

from ..errors import BadRequest, Forbidden, InvalidParameter, NotFound
from .validate import json_object

bp = Blueprint("feedback", __name__, url_prefix="/api/v1")
_FIELDS = {"request_id", "score", "label", "preferred", "comment"}
MAX_COMMENT = 2000


@bp.post("/feedback")
def feedback():
    svc = current_app.extensions["gateway"]
    body = json_object()
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InvalidParameter(f"unknown field(s) {', '.join(map(repr, unknown))}; feedback takes request_id and "
                               "one of score, label, preferred, and an optional comment", param=unknown[0])
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not request_id.strip() or len(request_id) > 200:
        raise BadRequest("'request_id' is required: the id an answer carried (its request_id field or X-Request-ID "
                         "header)", param="request_id")
    given = {k: body[k] for k in ("score", "label", "preferred") if body.get(k) is not None}
    if len(given) != 1:
        raise BadRequest("give exactly one of 'score' (0..1), 'label' (good or bad) or 'preferred' (local or "
                         f"cloud); got {len(given)}", param="score")
    score = given.get("score")
    if "score" in given and (isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score)
                             or not 0 <= score <= 1):
        raise InvalidParameter("'score' must be a number from 0 (useless) to 1 (perfect)", param="score")
    if "label" in given and given["label"] not in ("good", "bad"):
        raise InvalidParameter("'label' must be 'good' or 'bad'", param="label")
    if "preferred" in given and given["preferred"] not in ("local", "cloud"):
        raise InvalidParameter("'preferred' must be 'local' or 'cloud' (which side should have answered)",
                               param="preferred")
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        raise InvalidParameter(f"'comment' must be a string of at most {MAX_COMMENT} characters", param="comment")
    if svc.settings.feedback_ttl_seconds <= 0:
        raise NotFound("feedback is off on this gateway (FEEDBACK_TTL_SECONDS=0)", error_type="feedback_off")
    if not svc.calibrator.learns:
        raise NotFound("nothing on this gateway learns from feedback: set ROUTER=learned or hybrid, or "
                       "routing.target_quality in configs/models.yaml (docs/routing.md)", error_type="feedback_off")
    if comment:
        given["comment"] = comment
    result = svc.calibrator.feedback(request_id.strip(), g.api_key_id, given)
    if result is None:
        raise NotFound(f"no answered request {request_id.strip()[:100]!r} of this key in the last "
                       f"{svc.settings.feedback_ttl_seconds // 3600} h (feedback is kept that long)",
                       param="request_id", error_type="unknown_request")
    return jsonify(result)


@bp.get("/calibration")
def calibration():
    if not g.admin:
        raise Forbidden("the calibration covers every key's traffic: an admin key (GATEWAY_ADMIN_KEYS) sees it")
    return jsonify(current_app.extensions["gateway"].calibrator.report())
