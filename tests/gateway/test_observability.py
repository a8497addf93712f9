"""Metrics, GPU telemetry and the monitoring configs: what can be checked in-process or with promtool."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from gateway import gpu
from tests.conftest import ROOT
from tests.fakes import Script

DASHBOARDS = sorted((ROOT / "configs" / "grafana" / "dashboards").glob("*.json"))
SCHEMA = ROOT / ".cache" / "grafana" / "dashboard.schema.json"
SIMPLE = "What is Python?"
REQUIRED = ["api_gateway_requests_total", "api_gateway_request_duration_seconds_bucket",
            "api_gateway_upstream_duration_seconds_bucket", "api_gateway_cost_total", "api_gateway_savings_total",
            "api_gateway_tokens_total", "api_gateway_cache_total", "api_gateway_routing_decisions_total",
            "api_gateway_complexity_score_bucket", "api_gateway_fallbacks_total", "api_gateway_backend_up",
            "api_gateway_circuit_open", "api_gateway_budget_spent_dollars", "api_gateway_budget_limit_dollars",
            "api_gateway_in_flight_requests", "api_gateway_gpu_count", "api_gateway_time_to_first_token_seconds_bucket"]


def sample(text: str, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def test_metrics_cover_every_path(make_app, ollama, claude):
    client = make_app(BUDGET_MONTHLY_USD="10", CACHE_TTL_SECONDS="60").test_client()
    before = client.get("/metrics").get_data(as_text=True)
    client.post("/api/v1/chat", json={"prompt": SIMPLE, "temperature": 0})
    client.post("/api/v1/chat", json={"prompt": SIMPLE, "temperature": 0})  # cache hit
    client.post("/api/v1/chat", json={"prompt": "Design a distributed system for real-time chat at scale, with "
                                                "fault tolerance and consistency trade-offs"})
    ollama.queue(Script(status=500), Script(status=500))
    client.post("/api/v1/chat", json={"prompt": "What is Rust?"})  # fallback tinyllama -> phi
    client.post("/api/v1/chat", json={"prompt": SIMPLE, "model": "gpt-17"})  # 404, unknown model
    streamed = client.post("/api/v1/chat", json={"prompt": SIMPLE, "stream": True, "model": "phi"})
    streamed.get_data()
    streamed.close()  # as a server does when the stream ends: the stream's metrics are recorded then
    after = client.get("/metrics").get_data(as_text=True)
    for name in REQUIRED:
        assert name in after, name

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("api_gateway_requests_total", model="tinyllama", status="200") == 2
    assert delta("api_gateway_requests_total", model="claude-sonnet", backend="anthropic", tier="cloud") == 1
    assert delta("api_gateway_requests_total", model="none", status="404") == 1
    assert delta("api_gateway_cache_total", result="hit") == 1
    assert delta("api_gateway_fallbacks_total", from_backend="ollama", to_backend="ollama", cause="server_error") == 1
    assert delta("api_gateway_cost_total", model="claude-sonnet") > 0
    assert delta("api_gateway_savings_total") > 0
    assert delta("api_gateway_tokens_total", model="tinyllama", direction="input") == 3
    assert delta("api_gateway_time_to_first_token_seconds_count", backend="ollama") == 1
    assert delta("api_gateway_routing_decisions_total", tier="local-small", strategy="auto", reason="complexity") >= 3
    assert sample(after, "api_gateway_backend_up", backend="ollama") == 1
    assert sample(after, "api_gateway_budget_limit_dollars") == 10
    # Nothing of this test stays in flight (the gauge is per process: compared with before, so a stream another
    # test left open under the test client does not count here).
    assert delta("api_gateway_in_flight_requests") == 0
    assert "gpt-17" not in after  # a client's model name never becomes a label value


def test_metrics_trust_no_address_by_default(make_app):
    # Behind the edge or Docker's port proxy every client arrives from a private or loopback address: none
    # of them is trusted unless the operator lists it.
    client = make_app(METRICS_TRUSTED_NETWORKS="").test_client()
    for addr in ("127.0.0.1", "10.1.2.3", "172.18.0.5", "8.8.8.8"):
        r = client.get("/metrics", environ_base={"REMOTE_ADDR": addr})
        assert r.status_code == 403 and "METRICS_TOKEN" in r.get_json()["error"]["message"], addr


def test_metrics_without_token_only_for_the_networks_listed(make_app):
    client = make_app(METRICS_TRUSTED_NETWORKS="10.0.0.0/8, 172.18.0.5").test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "172.18.0.5"}).status_code == 200
    for addr in ("172.18.0.6", "127.0.0.1", "8.8.8.8"):
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": addr}).status_code == 403, addr


def test_metrics_token(make_app):
    client = make_app(METRICS_TOKEN="scrape-secret", METRICS_TRUSTED_NETWORKS="").test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert r.status_code == 200 and "api_gateway_backend_up" in r.get_data(as_text=True)


# --------------------------------------------------------------------------- GPU


class _Mem:
    total, used = 16 * 2**30, 4 * 2**30


def fake_pynvml(fail_init=False, power=True) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    m.NVML_TEMPERATURE_GPU = 0

    def init():
        if fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    m.nvmlInit, m.nvmlShutdown = init, lambda: None
    m.nvmlDeviceGetCount = lambda: 1
    m.nvmlDeviceGetHandleByIndex = lambda i: f"h{i}"
    m.nvmlDeviceGetName = lambda h: b"NVIDIA T4"
    m.nvmlDeviceGetMemoryInfo = lambda h: _Mem()
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=37)
    m.nvmlDeviceGetTemperature = lambda h, kind: 51
    m.nvmlDeviceGetPowerUsage = lambda h: 27500  # milliwatts

    def unsupported(h):
        raise RuntimeError("Not Supported")

    m.nvmlDeviceGetPowerUsage = m.nvmlDeviceGetPowerUsage if power else unsupported
    return m


def test_gpu_from_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    report = gpu.detect()
    assert report.source == "nvml"
    g = report.gpus[0]
    assert (g.name, g.memory_total_bytes, g.memory_used_bytes) == ("NVIDIA T4", 16 * 2**30, 4 * 2**30)
    assert (g.utilization_ratio, g.temperature_celsius, g.power_watts) == (0.37, 51.0, 27.5)


def test_gpu_field_a_card_does_not_report_is_left_out(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(power=False))
    assert gpu.detect().gpus[0].power_watts is None


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\necho '0, NVIDIA T4, 15360, 4096, 37, 51, 27.50'\n"
                      "echo '1, NVIDIA L4, 23034, 22000, [N/A], 60, [Not Supported]'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail_init=True))
    return script


def test_gpu_from_nvidia_smi_when_nvml_fails(fake_smi):
    report = gpu.detect()
    assert report.source == "nvidia-smi" and "nvml" in report.detail
    t4, l4 = report.gpus
    assert (t4.memory_total_bytes, t4.memory_used_bytes, t4.utilization_ratio) == (15360 * 2**20, 4096 * 2**20, 0.37)
    assert (l4.utilization_ratio, l4.power_watts, l4.temperature_celsius) == (None, None, 60.0)


def test_no_gpu(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail_init=True))
    monkeypatch.setenv("PATH", str(tmp_path))
    report = gpu.detect()
    assert report.source == "none" and report.gpus == () and "nvidia-smi not found" in report.detail


def test_gpu_endpoint_and_gauges(make_app, fake_smi):
    client = make_app().test_client()
    body = client.get("/api/v1/gpu").get_json()
    assert body["source"] == "nvidia-smi" and len(body["gpus"]) == 2
    assert body["gpus"][0]["memory_free_bytes"] == (15360 - 4096) * 2**20
    text = client.get("/metrics").get_data(as_text=True)
    assert sample(text, "api_gateway_gpu_count") == 2
    assert sample(text, "api_gateway_gpu_utilization_ratio", gpu="0:NVIDIA T4") == 0.37


def test_free_gpu_memory_sends_mid_tier_prompts_to_the_larger_model(make_app, fake_smi, ollama):
    client = make_app().test_client()
    client.get("/api/v1/gpu")  # first sample taken
    prompt = "Write a Python function to implement a binary search tree with insertion, deletion, and balancing."
    body = client.post("/api/v1/chat", json={"prompt": prompt}).get_json()
    assert body["model"] == "mistral" and "GPU has" in body["routing"]["reason"]


# --------------------------------------------------------------------------- Prometheus and Grafana files

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool not installed (scripts/test.sh installs it)")


@needs_promtool
def test_promtool_accepts_config_and_rules(tmp_path):
    # The config reads the metrics token from where docker-compose.yml mounts it: put one there.
    config = (ROOT / "configs/prometheus/prometheus.yml").read_text()
    assert "credentials_file: /run/metrics_token" in config
    (tmp_path / "metrics_token").write_text("a-token")
    (tmp_path / "prometheus.yml").write_text(config.replace("/run/metrics_token", str(tmp_path / "metrics_token")))
    (tmp_path / "alert-rules.yml").write_text((ROOT / "configs/prometheus/alert-rules.yml").read_text())
    for args in (["check", "config", str(tmp_path / "prometheus.yml")],
                 ["check", "rules", "configs/prometheus/alert-rules.yml"]):
        out = subprocess.run([promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_every_alert_has_a_passing_promtool_unit_test():
    rules = yaml.safe_load((ROOT / "configs/prometheus/alert-rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    for g in rules["groups"]:
        for r in g["rules"]:
            assert r.get("for") and r["labels"]["severity"] in ("warning", "critical")
            assert r["annotations"]["summary"] and r["annotations"]["description"]
            # every alert says where its runbook is, and that section exists
            page, _, anchor = r["annotations"]["runbook_url"].partition("#")
            headings = {line[3:].strip().lower() for line in (ROOT / page).read_text().splitlines()
                        if line.startswith("## ")}
            assert anchor in headings, f"{r['alert']}: no section #{anchor} in {page}"
    tests = yaml.safe_load((ROOT / "tests/gateway/prometheus/alert-rules.test.yml").read_text())
    firing = {t["alertname"] for group in tests["tests"] for t in group.get("alert_rule_test", []) if t["exp_alerts"]}
    assert alerts == firing, f"alerts without a firing test: {alerts - firing}"
    # promtool 2.42 resolves rule_files from the working directory: run it where the test file is.
    out = subprocess.run([promtool, "test", "rules", "alert-rules.test.yml"], cwd=ROOT / "tests/gateway/prometheus",
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


@pytest.mark.skipif(not SCHEMA.exists(), reason="Grafana schema not generated (scripts/testing/grafana_schema.sh)")
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_validate_against_grafanas_schema(path):
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    dashboard = json.loads(path.read_text())
    jsonschema.validate(dashboard, schema)
    broken = dict(dashboard, panels="not a list")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)  # the schema really checks


def test_provisioning_points_at_real_files_and_the_datasource_uid():
    prov = ROOT / "configs" / "grafana" / "provisioning"
    datasources = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"]
    uids = {d["uid"] for d in datasources}
    provider = yaml.safe_load((prov / "dashboards" / "hybrid-ai.yml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert len(DASHBOARDS) == 2
    for path in DASHBOARDS:
        d = json.loads(path.read_text())
        for panel in d["panels"]:
            assert panel["datasource"]["uid"] in uids
            assert all(t["datasource"]["uid"] in uids for t in panel["targets"])


def panel_queries(rate_interval: str | None = None, range_: str = "1h") -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expression) of every panel target; with rate_interval, Grafana's variables
    replaced as Grafana would before it asks Prometheus."""
    out = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for t in panel["targets"]:
                expr = t["expr"]
                if rate_interval:
                    expr = expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)
                out.append((path.stem, panel["title"], expr))
    return out


def test_panels_use_grafanas_windows_and_never_overlap():
    """Review finding 9: windows follow the dashboard ($__rate_interval, $__range), except the month-end
    forecast's documented 6 h pace; no panel covers another."""
    import re

    for dash, title, expr in panel_queries():
        fixed = set(re.findall(r"\[([^\]]+)\]", expr)) - {"$__rate_interval", "$__range"}
        assert fixed <= ({"6h"} if title == "Month-end forecast" else set()), f"{dash} / {title}: {fixed}"
    for path in DASHBOARDS:
        cells: dict[tuple[int, int], str] = {}
        for panel in json.loads(path.read_text())["panels"]:
            g = panel["gridPos"]
            assert g["x"] + g["w"] <= 24, panel["title"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{path.name}: {panel['title']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = panel["title"]


def test_state_panels_map_values_to_words_and_colours():
    """A down backend, an open circuit, Redis down and a cold model read as such (red or orange), not as a green
    0; the score distribution is a heatmap of per-band counts, not cumulative bars."""
    overview = {p["title"]: p for p in json.loads((DASHBOARDS[0].parent / "overview.json").read_text())["panels"]}
    state = overview["Backends, circuits and Redis"]
    mappings = {o["matcher"]["options"]: o["properties"][0]["value"][0]["options"]
                for o in state["fieldConfig"]["overrides"]}
    assert mappings["A"]["0"] == {"text": "DOWN", "color": "red", "index": 1}
    assert mappings["B"]["1"]["color"] == "red" and mappings["C"]["0"]["color"] == "red"
    assert [t["expr"] for t in state["targets"]][2] == "max(api_gateway_redis_up)"
    cold = overview["Loaded local models"]["fieldConfig"]["defaults"]["mappings"][0]["options"]["0"]
    assert cold["text"] == "cold"
    routing = {p["title"]: p for p in json.loads((DASHBOARDS[0].parent / "routing.json").read_text())["panels"]}
    heat = routing["Complexity scores"]
    assert heat["type"] == "heatmap" and heat["targets"][0]["format"] == "heatmap"
    assert heat["options"]["calculate"] is False and "increase(" in heat["targets"][0]["expr"]


def test_every_panel_uses_only_metrics_the_gateway_exports():
    exported = {"api_gateway_request_errors_total", "api_gateway_time_per_output_token_seconds_count",
                "api_gateway_time_per_output_token_seconds_sum", "api_gateway_time_per_output_token_seconds_bucket",
                "api_gateway_redis_up", "api_gateway_key_spend_dollars", "api_gateway_slot_wait_seconds_bucket",
                "api_gateway_model_loaded", "api_gateway_process_resident_memory_bytes",
                "api_gateway_process_cpu_seconds_total", "api_gateway_ollama_host_in_flight",
                "api_gateway_ollama_host_up", "api_gateway_slot_waiting", "api_gateway_ollama_cold_loads_total",
                "api_gateway_requests_total", "api_gateway_request_duration_seconds_bucket",
                "api_gateway_upstream_duration_seconds_bucket", "api_gateway_time_to_first_token_seconds_bucket",
                "api_gateway_cost_total", "api_gateway_savings_total", "api_gateway_tokens_total",
                "api_gateway_cache_total", "api_gateway_routing_decisions_total",
                "api_gateway_complexity_score_bucket", "api_gateway_fallbacks_total", "api_gateway_backend_up",
                "api_gateway_circuit_open", "api_gateway_budget_spent_dollars", "api_gateway_budget_limit_dollars",
                "api_gateway_budget_reserved_dollars", "api_gateway_budget_refusals_total",
                "api_gateway_in_flight_requests", "api_gateway_gpu_utilization_ratio",
                "api_gateway_gpu_memory_used_bytes", "api_gateway_gpu_memory_total_bytes",
                "api_gateway_gpu_temperature_celsius", "api_gateway_gpu_power_watts",
                # the learning router (gateway/telemetry.py _calibration_gauges)
                "api_gateway_calibration_quality", "api_gateway_calibration_cloud_share",
                "api_gateway_calibration_target_quality", "api_gateway_calibration_labels",
                "api_gateway_calibration_labels_used", "api_gateway_calibration_threshold",
                "api_gateway_calibration_spend_dollars", "api_gateway_calibration_drifted"}
    import re

    for dash, title, expr in panel_queries():
        used = set(re.findall(r"api_gateway_[a-z_]+", expr))
        assert used and used <= exported, f"{dash} / {title}: {used - exported}"


def test_dashboard_files_are_pretty_printed_json():
    for path in DASHBOARDS:
        text = path.read_text()
        assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n", path.name


def test_repo_has_no_unreferenced_monitoring_files():
    prom = {p.name for p in (ROOT / "configs" / "prometheus").iterdir()}
    assert prom == {"prometheus.yml", "alert-rules.yml"}
    assert Path(ROOT / "configs/prometheus/prometheus.yml").read_text().count("alert-rules.yml") == 1


@pytest.mark.parametrize("env", [
    {},
    {"ALERTMANAGER_WEBHOOK_URL": "http://n8n:5678/webhook/alertmanager", "ALERTMANAGER_WEBHOOK_TOKEN": "t0ken"},
    {"ALERT_EMAIL_TO": "ops@example.com", "ALERT_SMTP_SMARTHOST": "smtp.example.com:587", "ALERT_SMTP_USER": "u",
     "ALERT_SMTP_PASSWORD": "p"},
], ids=["nowhere", "webhook", "email"])
def test_alertmanager_config_from_env_passes_amtool(env, tmp_path):
    """configs/alertmanager/render.sh writes what Alertmanager loads; amtool (Alertmanager's own checker)
    accepts it for every combination of settings, and every rule reaches it through Prometheus."""
    out = tmp_path / "alertmanager.yml"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ALERT", "ALERTMANAGER"))}
    subprocess.run(["sh", str(ROOT / "configs" / "alertmanager" / "render.sh"), str(out)], env={**clean, **env},
                   check=True, timeout=30)
    check = subprocess.run([shutil.which("amtool") or "amtool", "check-config", str(out)], capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(out.read_text())
    [receiver] = config["receivers"]
    assert ("webhook_configs" in receiver) == ("ALERTMANAGER_WEBHOOK_URL" in env)
    if "ALERTMANAGER_WEBHOOK_TOKEN" in env:  # n8n's alert router only takes alerts that carry the token
        [hook] = receiver["webhook_configs"]
        assert hook["http_config"]["authorization"]["credentials"] == "t0ken"
    assert ("email_configs" in receiver) == ("ALERT_EMAIL_TO" in env)
    prometheus = yaml.safe_load((ROOT / "configs" / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    jobs = {job["job_name"] for job in prometheus["scrape_configs"]}
    assert {"api-gateway", "node", "cadvisor", "alertmanager"} <= jobs


def test_budget_refusals_and_the_reserved_amount_are_exported(make_app, claude):
    """The review's case: the budget refuses paid calls while spend is far under it (spent + reserved counts).
    Spend alone never shows it; the refusals counter and the reserved gauge do."""
    client = make_app(BUDGET_MONTHLY_USD="0.05").test_client()
    metrics = lambda: client.get("/metrics").get_data(as_text=True)  # noqa: E731
    before = metrics()
    assert sample(before, "api_gateway_budget_reserved_dollars") == 0.0
    r = client.post("/api/v1/chat", json={"prompt": "Explain consensus.", "model": "claude-sonnet",
                                          "max_tokens": 30000})
    assert r.status_code == 429 and r.get_json()["error"]["type"] == "budget_exceeded"
    text = metrics()
    refused = lambda t: sample(t, "api_gateway_budget_refusals_total", model="claude-sonnet")  # noqa: E731
    assert refused(text) == refused(before) + 1  # the counters are the process's: other tests count too
    assert sample(text, "api_gateway_budget_spent_dollars") == 0.0 and claude.requests == []


def test_results_causes_stream_and_paid_labels(make_app, ollama, claude):
    """The review's findings 4, 6 and 8: a stream cut part-way is sent as 200 yet counted as interrupted, with the
    upstream failure as its cause; errors by cause; one `paid` label; time to first token per model and time per
    output token for streams."""
    client = make_app().test_client()
    metrics = lambda: client.get("/metrics").get_data(as_text=True)  # noqa: E731
    before = metrics()
    ok = client.post("/api/v1/chat", json={"prompt": SIMPLE, "model": "tinyllama", "stream": True})
    ok.get_data()
    ok.close()
    ollama.queue(Script(reply="one two three four five six", cut_after=2))
    cut = client.post("/v1/chat/completions", json={"model": "tinyllama", "stream": True,
                                                    "messages": [{"role": "user", "content": SIMPLE}]})
    assert cut.status_code == 200 and b"error" in cut.get_data()
    cut.close()
    assert client.post("/api/v1/chat", json={"prompt": SIMPLE, "model": "claude-sonnet"}).status_code == 200
    ollama.queue(*[Script(drop=True)] * 8)
    failed = client.post("/api/v1/chat", json={"prompt": SIMPLE, "model": "tinyllama"})
    assert failed.status_code >= 500
    assert client.post("/api/v1/chat", json={"prompt": ""}).status_code == 400
    text = metrics()

    def delta(name, **labels):
        return sample(text, name, **labels) - sample(before, name, **labels)

    requests = "api_gateway_requests_total"
    assert delta(requests, model="tinyllama", status="200", stream="true", result="ok", paid="false") == 1
    assert delta(requests, model="tinyllama", status="200", stream="true", result="interrupted") == 1
    assert delta(requests, model="claude-sonnet", stream="false", paid="true", result="ok") == 1
    assert delta(requests, status=str(failed.status_code), result="error") == 1
    assert delta(requests, status="400", result="rejected") == 1
    errors = "api_gateway_request_errors_total"
    assert delta(errors, surface="openai", stream="true", result="interrupted", cause="connection") == 1
    assert delta(errors, surface="native", result="error", cause=failed.get_json()["error"]["type"]) == 1
    assert delta(errors, surface="native", result="rejected", cause="invalid_request") == 1
    assert delta("api_gateway_time_to_first_token_seconds_count", model="tinyllama", backend="ollama") == 2
    assert delta("api_gateway_time_per_output_token_seconds_count", model="tinyllama") == 1  # the whole stream only
    assert delta("api_gateway_request_duration_seconds_bucket", model="claude-sonnet", stream="false",
                 le="180.0") == 1


def test_a_cascade_escalation_is_a_policy_fallback_not_a_failure(make_app, ollama, claude):
    """Finding 5: FallbacksSurging counts only kind="failure"; an escalation is the router's choice."""
    client = make_app().test_client()
    before = client.get("/metrics").get_data(as_text=True)
    ollama.default = Script(reply="16 - 3 = 12. She has 12 eggs left.")
    r = client.post("/api/v1/chat", json={"prompt": "Janet has 16 eggs and eats 3. How many eggs are left?",
                                          "strategy": "cascade"})
    assert r.status_code == 200 and r.get_json()["backend"] == "anthropic"
    after = client.get("/metrics").get_data(as_text=True)
    fallbacks = lambda t, **k: sample(t, "api_gateway_fallbacks_total", **k)  # noqa: E731
    assert fallbacks(after, cause="cascade_review", kind="policy") == fallbacks(before, cause="cascade_review",
                                                                                kind="policy") + 1
    assert fallbacks(after, kind="failure") == fallbacks(before, kind="failure")


def test_per_key_spend_loaded_models_and_slot_waits(make_app, ollama, claude):
    """Per-key spend for the configured keys only (a bounded label), which local models are loaded (cold loads
    ahead), and how long requests waited for a capped backend's slot."""
    from gateway.api.hooks import key_id

    client = make_app(GATEWAY_API_KEYS="key-a,key-b", GATEWAY_ADMIN_KEYS="key-admin",
                      OLLAMA_MAX_CONCURRENCY="1").test_client()
    before = client.get("/metrics", headers={"X-API-Key": "key-admin"}).get_data(as_text=True)
    assert client.post("/api/v1/chat", json={"prompt": SIMPLE, "model": "claude-sonnet"},
                       headers={"X-API-Key": "key-a"}).status_code == 200
    assert client.post("/api/v1/chat", json={"prompt": SIMPLE, "model": "tinyllama"},
                       headers={"X-API-Key": "key-b"}).status_code == 200
    text = client.get("/metrics", headers={"X-API-Key": "key-admin"}).get_data(as_text=True)
    assert sample(text, "api_gateway_key_spend_dollars", key=key_id("key-a")) > 0
    assert sample(text, "api_gateway_key_spend_dollars", key=key_id("key-b")) == 0
    assert "key-a" not in text and text.count("api_gateway_key_spend_dollars{") == 3  # every configured key
    assert sample(text, "api_gateway_model_loaded", model="tinyllama", backend="ollama") == 1
    assert sample(text, "api_gateway_model_loaded", model="phi", backend="ollama") == 0  # pulled, not loaded
    assert 'api_gateway_model_loaded{backend="anthropic"' not in text
    waited = lambda t: sample(t, "api_gateway_slot_wait_seconds_count", backend="ollama", got="true")  # noqa: E731
    assert waited(text) == waited(before) + 1
    assert sample(text, "api_gateway_slot_wait_seconds_count", backend="anthropic") == 0  # uncapped: no wait


def test_gunicorn_processes_from_proc():
    """What the gateway reports of its gunicorn processes, read here for this test's own parent and siblings."""
    from gateway.procstat import gunicorn_processes

    listed = gunicorn_processes()
    me = next(p for p in listed if p.pid == os.getpid())
    assert me.role == "worker" and me.rss_bytes > 10_000_000 and me.cpu_seconds > 0
    assert listed[0].pid == os.getppid() and listed[0].role == "master"
