"""Settings from the environment and the models catalog: defaults, validation, clear errors."""

import pytest
import yaml

from gateway.catalog import CatalogError, load_catalog, parse_catalog
from gateway.config import PROJECT_ROOT, ConfigError, Settings


def test_defaults():
    s = Settings.from_env({})
    assert (s.host, s.port, s.deployment_tier, s.routing_strategy) == ("0.0.0.0", 8080, 2, "auto")
    assert s.ollama.url == "http://localhost:11434" and s.configured_backends == frozenset({"ollama"})
    assert s.api_keys == () and s.redis_url is None


def test_keys_and_backends_from_env():
    s = Settings.from_env({"ANTHROPIC_API_KEY": "sk-x", "OPENAI_COMPAT_URL": "http://vllm:8000/v1/",
                           "GATEWAY_API_KEYS": " a, b ,,", "DEPLOYMENT_TIER": "3", "LOG_LEVEL": "debug"})
    assert s.configured_backends == frozenset({"ollama", "anthropic", "openai_compat"})
    assert s.openai_compat.url == "http://vllm:8000/v1" and s.api_keys == ("a", "b")
    assert s.deployment_tier == 3 and s.log_level == "DEBUG"
    assert "sk-x" not in repr(s) and "'a'" not in repr(s)  # secrets never reach a log via repr


def test_all_problems_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        Settings.from_env({"DEPLOYMENT_TIER": "7", "ROUTING_STRATEGY": "cheap", "GATEWAY_PORT": "http",
                           "OLLAMA_URL": "ollama:11434"})
    msg = str(exc.value)
    for name in ("DEPLOYMENT_TIER", "ROUTING_STRATEGY", "GATEWAY_PORT", "OLLAMA_URL"):
        assert name in msg


def test_env_example_documents_every_variable_read():
    example = (PROJECT_ROOT / ".env.example").read_text()
    source = (PROJECT_ROOT / "gateway" / "config.py").read_text() + (
        PROJECT_ROOT / "gateway" / "gunicorn.conf.py").read_text()
    import re
    read = set(re.findall(r'r\.\w+\("([A-Z_]+)"', source)) | set(re.findall(r'environ\.get\("([A-Z_]+)"', source))
    documented = set(re.findall(r"^#?\s*([A-Z_]+)=", example, re.MULTILINE))
    assert read and read <= documented, f"undocumented: {sorted(read - documented)}"


def test_shipped_catalog_is_valid_and_dated():
    cat = load_catalog(PROJECT_ROOT / "configs" / "models.yaml")
    assert cat.prices_as_of
    assert [t.name for t in cat.tiers] == ["local-small", "local-medium", "local-large", "cloud"]
    sonnet = cat.model("claude-sonnet")
    assert sonnet.backend == "anthropic" and sonnet.price_in_per_mtok > 0 and sonnet.price_out_per_mtok > 0
    assert all(m.price_in_per_mtok == 0 for m in cat.models if m.backend == "ollama")
    assert cat.routing.cascade_min_mean_logprob == -1.5


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda r: r["models"][0].update(backend="bedrock"), "backend must be one of"),
        (lambda r: r["models"][0].update(tier="huge"), "not a configured tier"),
        (lambda r: r["models"][0].pop("price_in_per_mtok"), "required numbers"),
        (lambda r: r["tiers"].reverse(), "ascending max_score"),
        (lambda r: r["routing"]["weights"].update(vibes=1), "unknown factors"),
        (lambda r: r["models"].append(dict(r["models"][0])), "duplicate model"),
        (lambda r: r["routing"]["cascade"].update(min_mean_logprob=0.5), "must be a negative number"),
        (lambda r: r["routing"]["cascade"].update(min_mean_logprob="low"), "must be a negative number"),
    ],
)
def test_catalog_errors_name_the_problem(mutate, fragment):
    raw = yaml.safe_load((PROJECT_ROOT / "configs" / "models.yaml").read_text())
    mutate(raw)
    with pytest.raises(CatalogError, match=fragment):
        parse_catalog(raw)


def test_missing_catalog_file_is_a_clear_error(tmp_path):
    with pytest.raises(CatalogError, match="cannot read"):
        Settings.from_env({"MODELS_CONFIG": str(tmp_path / "nope.yaml")})
