"""Embeddings through /v1/embeddings (the openai SDK, which asks for base64 unless told otherwise; LangChain's
OpenAIEmbeddings) and the native /api/v1/embed: what the client gets and what the upstream was sent."""

from __future__ import annotations

import base64
import struct

import openai
import pytest
import requests
from langchain_openai import OpenAIEmbeddings

from tests.fakes import Script
from tests.fakes.ollama import vector

KEY = "gateway-test-key"


@pytest.fixture
def base(make_app, serve, ollama):
    ollama.installed.add("nomic-embed-text")
    return serve(make_app(GATEWAY_API_KEYS=KEY))


@pytest.fixture
def sdk(base) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=20)


def test_the_openai_sdk_gets_the_local_models_vectors_in_either_encoding(sdk, ollama):
    texts = ["the cat sat", "on the mat"]
    floats = sdk.embeddings.create(model="auto", input=texts, encoding_format="float")
    base64_default = sdk.embeddings.create(model="nomic-embed-text", input=texts)  # the SDK asks for base64
    for out in (floats, base64_default):
        assert out.model == "nomic-embed-text" and [d.index for d in out.data] == [0, 1]
        for d, t in zip(out.data, texts, strict=True):
            assert d.embedding == pytest.approx(vector(t, 8), rel=1e-6)
        assert out.usage.prompt_tokens == 6 and out.usage.total_tokens == 6
    sent = ollama.calls("/api/embed")[0].body
    assert sent["model"] == "nomic-embed-text" and sent["input"] == texts


def test_base64_is_little_endian_float32(base):
    r = requests.post(f"{base}/v1/embeddings", json={"input": "hello", "encoding_format": "base64"},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    assert list(struct.unpack("<8f", raw)) == pytest.approx(vector("hello", 8), rel=1e-6)


def test_dimensions_and_the_native_route(base, ollama):
    r = requests.post(f"{base}/api/v1/embed", json={"input": "hello", "dimensions": 4}, headers={"X-API-Key": KEY},
                      timeout=10)
    body = r.json()
    assert r.status_code == 200 and len(body["embeddings"][0]) == 4 and body["backend"] == "ollama"
    assert body["cost"] == 0.0 and body["usage"] == {"input_tokens": 1}
    assert ollama.calls("/api/embed")[-1].body["dimensions"] == 4


def test_langchain_openai_embeddings(base, ollama):
    emb = OpenAIEmbeddings(model="nomic-embed-text", base_url=f"{base}/v1", api_key=KEY,
                           check_embedding_ctx_length=False)  # no tiktoken: the gateway's model is not OpenAI's
    docs = emb.embed_documents(["alpha", "beta"])
    assert docs[1] == pytest.approx(vector("beta", 8), rel=1e-6)  # float32 on the wire
    assert emb.embed_query("alpha") == pytest.approx(docs[0])


@pytest.fixture
def paid_embeddings(make_app, serve, compat, tmp_path):
    """A gateway whose embedding model is a paid OpenAI-compatible one ($0.02 per million tokens)."""
    import yaml

    from tests.conftest import ROOT
    raw = yaml.safe_load((ROOT / "configs" / "models.yaml").read_text())
    raw["embedding_models"] = [{"name": "te3", "backend": "openai_compat", "id": "compat-model",
                                "context_window": 8191, "price_in_per_mtok": 0.02, "price_out_per_mtok": 0}]
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(raw))

    def _make(**env):
        return serve(make_app(GATEWAY_API_KEYS=KEY, MODELS_CONFIG=str(path), OPENAI_COMPAT_URL=f"{compat.url}/v1",
                              OPENAI_COMPAT_API_KEY="sk-compat-test", **env))
    return _make


def test_an_openai_compatible_embedding_model_and_its_cost(paid_embeddings, compat):
    base = paid_embeddings()
    out = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0).embeddings.create(
        model="te3", input=["one two three"])
    assert out.model == "te3" and len(out.data[0].embedding) == 8
    assert compat.calls("/v1/embeddings")[0].body == {"model": "compat-model", "input": ["one two three"],
                                                      "encoding_format": "float"}
    stats = requests.get(f"{base}/api/v1/stats", headers={"X-API-Key": KEY}, timeout=5).json()
    assert stats["by_model"] == {"te3": 1} and stats["spend_this_month"]["spent_usd"] == pytest.approx(3 * 0.02 / 1e6)


@pytest.mark.parametrize(("body", "status", "param"), [
    ({}, 400, "input"),
    ({"input": []}, 400, "input"),
    ({"input": [1, 2, 3]}, 422, "input"),
    ({"input": ["ok", ""]}, 422, "input[1]"),
    ({"input": ["x"] * 2049}, 422, "input"),
    ({"input": "x", "encoding_format": "int8"}, 422, "encoding_format"),
    ({"input": "x", "dimensions": 0}, 422, "dimensions"),
    ({"input": "x", "model": "tinyllama"}, 404, "model"),
])
def test_bad_input(base, ollama, body, status, param):
    r = requests.post(f"{base}/v1/embeddings", json=body, headers={"X-API-Key": KEY}, timeout=10)
    assert r.status_code == status and r.json()["error"]["param"] == param
    assert ollama.calls("/api/embed") == []


def test_an_ollama_without_the_model_says_what_to_pull(base, ollama):
    ollama.installed.discard("nomic-embed-text")
    r = requests.post(f"{base}/api/v1/embed", json={"input": "x"}, headers={"X-API-Key": KEY}, timeout=10)
    assert r.status_code == 503 and "ollama pull nomic-embed-text" in r.json()["error"]["message"]


def test_models_lists_the_embedding_model_with_its_kind(base):
    native = requests.get(f"{base}/api/v1/models", headers={"X-API-Key": KEY}, timeout=5).json()["models"]
    kinds = {m["name"]: m["kind"] for m in native}
    assert kinds["nomic-embed-text"] == "embedding" and kinds["tinyllama"] == "chat"
    listed = requests.get(f"{base}/v1/models", headers={"X-API-Key": KEY}, timeout=5).json()["data"]
    assert {"id": "nomic-embed-text", "kind": "embedding"}.items() <= next(
        m for m in listed if m["id"] == "nomic-embed-text").items()


def test_stats_count_embedding_requests_per_key(make_app, serve, ollama):
    ollama.installed.add("nomic-embed-text")
    base = serve(make_app(GATEWAY_API_KEYS=f"{KEY},other-key"))
    ollama.default = Script()
    for _ in range(2):
        requests.post(f"{base}/api/v1/embed", json={"input": "x"}, headers={"X-API-Key": KEY}, timeout=10)
    stats = requests.get(f"{base}/api/v1/stats", headers={"X-API-Key": KEY}, timeout=5).json()
    assert stats["by_model"]["nomic-embed-text"] == 2 and stats["by_tier"]["embedding"] == 2
    other = requests.get(f"{base}/api/v1/stats", headers={"X-API-Key": "other-key"}, timeout=5).json()
    assert other["requests"] == 0  # another key sees none of them


def test_a_paid_embedding_model_is_held_to_the_budget(paid_embeddings, compat):
    """The worst case (a token per byte) is reserved first: over the budget it is a 429 and nothing is sent."""
    base = paid_embeddings(BUDGET_MONTHLY_USD="0.000001")
    r = requests.post(f"{base}/v1/embeddings", json={"model": "te3", "input": "x" * 10_000},
                      headers={"X-API-Key": KEY}, timeout=10)
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded"
    assert compat.calls("/v1/embeddings") == []
    small = requests.post(f"{base}/v1/embeddings", json={"model": "te3", "input": "one two"},
                          headers={"X-API-Key": KEY}, timeout=10)
    assert small.status_code == 200
    budget = requests.get(f"{base}/api/v1/budget", headers={"X-API-Key": KEY}, timeout=5).json()
    assert budget["spent_usd"] == pytest.approx(2 * 0.02 / 1e6) and budget["reserved_usd"] == 0


def test_embeddings_count_against_the_keys_rate_limit(make_app, serve, ollama, same_minute):
    ollama.installed.add("nomic-embed-text")
    base = serve(make_app(GATEWAY_API_KEYS=KEY, RATE_LIMIT_RPM=1))
    first = requests.post(f"{base}/api/v1/embed", json={"input": "x"}, headers={"X-API-Key": KEY}, timeout=10)
    second = requests.post(f"{base}/api/v1/embed", json={"input": "x"}, headers={"X-API-Key": KEY}, timeout=10)
    assert first.status_code == 200 and second.status_code == 429 and second.headers["Retry-After"]
    assert len(ollama.calls("/api/embed")) == 1
