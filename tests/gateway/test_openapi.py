"""The OpenAPI description: valid OpenAPI 3.1, and exactly the routes the app serves."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from gateway.chat import STRATEGIES


@pytest.fixture
def spec(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return r.get_json()


def test_served_open_and_valid(make_app, spec):
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    # open even with keys configured, like the health checks
    assert make_app(GATEWAY_API_KEYS="k").test_client().get("/openapi.json").status_code == 200


def test_every_route_is_described_and_nothing_else(client, spec):
    served = set()
    for rule in client.application.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        served |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    described = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert served == described


def test_described_enums_match_the_code(spec):
    schemas = spec["components"]["schemas"]
    assert schemas["ChatRequest"]["properties"]["strategy"]["enum"] == list(STRATEGIES)
    assert schemas["ChatCompletionRequest"]["properties"]["strategy"]["enum"] == list(STRATEGIES)


def test_documented_responses_match_real_ones(client):
    import jsonschema

    spec = client.get("/openapi.json").get_json()

    def check(name, body):
        schemas = spec["components"]["schemas"]
        jsonschema.validate(body, _inline(schemas[name], schemas))

    check("ChatResponse", client.post("/api/v1/chat", json={"prompt": "What is Python?"}).get_json())
    check("Error", client.post("/api/v1/chat", json={}).get_json())
    check("ModelList", client.get("/v1/models").get_json())
    check("OpenAIError", client.post("/v1/chat/completions", json={"model": "auto"}).get_json())
    check("BudgetResponse", client.get("/api/v1/budget").get_json())


def _inline(schema, schemas):
    """Resolve #/components/schemas/X references in place (enough for these tests)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(schemas[schema["$ref"].rsplit("/", 1)[1]], schemas)
        return {k: _inline(v, schemas) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(v, schemas) for v in schema]
    return schema
