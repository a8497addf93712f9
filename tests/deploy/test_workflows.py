"""workflows/*.json without n8n: well-formed n8n workflow JSON, a connected graph, no secrets, gateway and
Prometheus URLs from variables. tests/integration/test_n8n_workflows.py imports and runs them in a real n8n."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

WORKFLOWS = ROOT / "workflows"
FILES = {"smart_routing.json": "hybridSmartRoute", "cost_monitor.json": "hybridCostMonitr",
         "performance_monitor.json": "hybridPerfReport", "orchestrator_pipeline.json": "hybridOrchestrat"}
TRIGGERS = {"n8n-nodes-base.webhook", "n8n-nodes-base.scheduleTrigger", "n8n-nodes-base.manualTrigger"}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def load(name: str) -> dict:
    return json.loads((WORKFLOWS / name).read_text())


def nodes_by_type(wf: dict, kind: str) -> list[dict]:
    return [n for n in wf["nodes"] if n["type"] == f"n8n-nodes-base.{kind}"]


def strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def test_exactly_the_documented_workflows():
    assert sorted(p.name for p in WORKFLOWS.glob("*.json")) == sorted(FILES)
    readme = (WORKFLOWS / "README.md").read_text()
    for name in FILES:
        assert f"`{name}`" in readme, f"workflows/README.md does not describe {name}"


@pytest.mark.parametrize("name", sorted(FILES))
def test_well_formed_and_pretty_printed(name):
    text = (WORKFLOWS / name).read_text()
    wf = json.loads(text)
    assert text == json.dumps(wf, indent=2, ensure_ascii=False) + "\n", "pretty-print with indent 2"
    assert wf["id"] == FILES[name] and len(wf["id"]) <= 21, "stable ids: a re-import updates, never duplicates"
    assert wf["name"] and wf["settings"]["executionOrder"] == "v1" and wf["active"] is False
    names = [n["name"] for n in wf["nodes"]]
    ids = [n["id"] for n in wf["nodes"]]
    assert len(set(names)) == len(names) and len(set(ids)) == len(ids)
    for n in wf["nodes"]:
        assert UUID.match(n["id"]) and n["type"].startswith("n8n-nodes-base.")
        assert isinstance(n["typeVersion"], (int, float)) and isinstance(n["parameters"], dict)
        assert len(n["position"]) == 2


@pytest.mark.parametrize("name", sorted(FILES))
def test_connections_form_one_graph_from_the_triggers(name):
    wf = load(name)
    by_name = {n["name"]: n for n in wf["nodes"]}
    targets = set()
    for source, outputs in wf["connections"].items():
        assert source in by_name, f"connection from unknown node {source!r}"
        for branch in outputs["main"]:
            for edge in branch:
                assert edge["node"] in by_name, f"{source} -> unknown node {edge['node']!r}"
                assert edge["type"] == "main" and edge["index"] == 0
                targets.add(edge["node"])
    for n in wf["nodes"]:
        if n["type"] in TRIGGERS:
            assert n["name"] not in targets and n["name"] in wf["connections"], f"trigger {n['name']} leads nowhere"
        else:
            assert n["name"] in targets, f"{n['name']} is never reached"
    # Every IF has both branches wired or the false branch deliberately empty; nothing hangs off a Respond node.
    for n in nodes_by_type(wf, "respondToWebhook"):
        assert n["name"] not in wf["connections"]


@pytest.mark.parametrize("name", sorted(FILES))
def test_no_secrets_and_urls_from_variables(name):
    text = (WORKFLOWS / name).read_text()
    wf = json.loads(text)
    assert "Authorization" not in text and "Bearer" not in text
    assert not re.search(r"sk-[A-Za-z0-9]", text) and "gw-" not in text
    for n in wf["nodes"]:
        assert "credentials" not in n or all(set(c) <= {"id", "name"} for c in n["credentials"].values())
    for n in nodes_by_type(wf, "httpRequest"):
        url = n["parameters"]["url"]
        assert url.startswith("={{") and "$env." in url, f"{n['name']}: URL must come from a variable: {url}"
        for header in n["parameters"].get("headerParameters", {}).get("parameters", []):
            assert header["value"] == "={{ $env.GATEWAY_API_KEY }}", f"{n['name']}: header {header['name']}"
    for s in strings(wf):
        for url in re.findall(r"https?://[^\s'\"`]+", s):
            assert re.match(r"http://(api-gateway:8080|prometheus:9090)$", url), f"hard-coded URL {url}"


def test_modern_code_node_only():
    for name in FILES:
        wf = load(name)
        assert not nodes_by_type(wf, "function") and not nodes_by_type(wf, "functionItem"), name
    assert nodes_by_type(load("orchestrator_pipeline.json"), "code")


def test_triggers_as_documented():
    hooks = {n["parameters"]["path"]: n for f in FILES for n in nodes_by_type(load(f), "webhook")}
    assert set(hooks) == {"ai-request", "orchestrate"}
    for hook in hooks.values():
        assert hook["parameters"]["httpMethod"] == "POST" and hook["parameters"]["responseMode"] == "responseNode"
        assert UUID.match(hook["webhookId"])
    hourly = nodes_by_type(load("cost_monitor.json"), "scheduleTrigger")[0]["parameters"]["rule"]["interval"][0]
    assert hourly == {"field": "hours", "hoursInterval": 1}
    weekly = nodes_by_type(load("performance_monitor.json"), "scheduleTrigger")[0]["parameters"]["rule"]["interval"][0]
    assert weekly["field"] == "weeks"
    for name in ("cost_monitor.json", "performance_monitor.json"):
        assert nodes_by_type(load(name), "manualTrigger"), f"{name}: 'Run now' for people and for n8n execute"


def test_compose_imports_and_publishes_them():
    compose = (ROOT / "docker-compose.yml").read_text()
    assert '["/bin/sh", "/workflows/import.sh", "/workflows"]' in compose and "./workflows:/workflows:ro" in compose
    # imports each workflow once (tests/integration/test_n8n_workflows.py)
    script = (WORKFLOWS / "import.sh").read_text()
    assert 'n8n import:workflow --input="$file"' in script and 'n8n publish:workflow --id="$id"' in script
    for var in ("GATEWAY_URL", "GATEWAY_API_KEY", "PROMETHEUS_URL", "ALERT_WEBHOOK_URL", "COST_ALERT_SHARE",
                "REPORT_WINDOW"):
        assert re.search(rf"^      {var}: ", compose, re.M), var
    used = {m for f in FILES for m in re.findall(r"\$env\.([A-Z_]+)", (WORKFLOWS / f).read_text())}
    for var in used:
        assert re.search(rf"^      {var}: ", compose, re.M), f"workflows read $env.{var}; compose does not set it"
    assert Path(ROOT / ".env.example").read_text().count("ALERT_WEBHOOK_URL=") == 1
