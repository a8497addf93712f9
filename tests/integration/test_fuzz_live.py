"""Schemathesis against a live gunicorn (the production server), every operation, with auth."""

from __future__ import annotations

import pytest
import schemathesis

from tests.gateway.test_fuzz import OPERATIONS, fuzz

pytestmark = pytest.mark.integration


def test_fuzz_every_operation_on_a_live_gateway(gunicorn, ollama, tmp_path):
    ollama.installed.add("nomic-embed-text")  # the embedding model the shipped catalog names
    url, _, _ = gunicorn(CACHE_TTL_SECONDS="0", REQUEST_DEADLINE_SECONDS="10", BATCH_DIR=str(tmp_path / "batches"))
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    total = sum(fuzz(schema, path, method, 40, "integration-key", base_url=url) for path, method in OPERATIONS)
    assert total >= 200
