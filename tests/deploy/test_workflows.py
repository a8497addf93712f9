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
         "performance_monitor.json": "hybridPerfReport", "orchestrator_pipeline.json": "hybridOrchestrat",
         "error_notifier.json": "hybridErrorNotif", "alert_router.json": "hybridAlertRoute",
         "readiness_watcher.json": "hybridReadyWatch", "ai_agent.json": "hybridAgentTools"}
TRIGGERS = {"n8n-nodes-base.webhook", "n8n-nodes-base.scheduleTrigger", "n8n-nodes-base.manualTrigger",
            "n8n-nodes-base.errorTrigger"}
# The credentials workflows/import.sh makes from .env: ids the workflows name, never their values.
CREDENTIALS = {"hybridGatewayKey": "httpHeaderAuth", "hybridOpenAiGate": "openAiApi",
               "hybridAlertToken": "httpHeaderAuth"}
GATEWAY_DEADLINE_MS = 180_000  # REQUEST_DEADLINE_SECONDS' default
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
        assert UUID.match(n["id"]) and n["type"].startswith(("n8n-nodes-base.", "@n8n/n8n-nodes-langchain."))
        assert isinstance(n["typeVersion"], (int, float)) and isinstance(n["parameters"], dict)
        assert len(n["position"]) == 2


@pytest.mark.parametrize("name", sorted(FILES))
def test_connections_form_one_graph_from_the_triggers(name):
    wf = load(name)
    by_name = {n["name"]: n for n in wf["nodes"]}
    targets = set()
    for source, outputs in wf["connections"].items():
        assert source in by_name, f"connection from unknown node {source!r}"
        for kind, branches in outputs.items():  # main, or a sub-node's link (ai_languageModel, ai_tool)
            for branch in branches:
                for edge in branch:
                    assert edge["node"] in by_name, f"{source} -> unknown node {edge['node']!r}"
                    assert edge["type"] == kind and edge["index"] == 0
                    targets.add(edge["node"] if kind == "main" else source)
    for n in wf["nodes"]:
        if n["type"] in TRIGGERS:
            assert n["name"] not in targets and n["name"] in wf["connections"], f"trigger {n['name']} leads nowhere"
        else:
            assert n["name"] in targets, f"{n['name']} is never reached"
    # Every IF has both branches wired or the false branch deliberately empty; nothing hangs off a Respond node
    # but a Stop and Error (the caller has its answer; the run is then marked failed for the Error notifier).
    for n in nodes_by_type(wf, "respondToWebhook"):
        after = [e["node"] for branch in wf["connections"].get(n["name"], {}).get("main", []) for e in branch]
        assert all(by_name[a]["type"] == "n8n-nodes-base.stopAndError" for a in after), n["name"]


@pytest.mark.parametrize("name", sorted(FILES))
def test_no_secrets_and_urls_from_variables(name):
    text = (WORKFLOWS / name).read_text()
    wf = json.loads(text)
    assert "Authorization" not in text and "Bearer" not in text
    assert not re.search(r"sk-[A-Za-z0-9]", text) and "gw-" not in text
    for n in wf["nodes"]:
        for kind, ref in n.get("credentials", {}).items():
            assert set(ref) == {"id", "name"} and CREDENTIALS[ref["id"]] == kind, f"{n['name']}: {ref}"
    assert "GATEWAY_API_KEY" not in text, "the key is in a credential (import.sh), never read from n8n's $env"
    for n in nodes_by_type(wf, "httpRequest"):
        url = n["parameters"]["url"]
        assert url.startswith("={{") and "$env." in url, f"{n['name']}: URL must come from a variable: {url}"
        assert "headerParameters" not in n["parameters"], f"{n['name']}: headers come from a credential"
        if "GATEWAY_URL" in url and "/health" not in url:
            assert n["parameters"]["genericAuthType"] == "httpHeaderAuth", n["name"]
            assert n["credentials"]["httpHeaderAuth"]["id"] == "hybridGatewayKey", n["name"]
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
    assert set(hooks) == {"ai-request", "orchestrate", "alertmanager", "agent"}
    # Alertmanager's webhook carries a token: anyone else reaching n8n cannot inject alerts
    assert hooks["alertmanager"]["parameters"]["authentication"] == "headerAuth"
    assert hooks["alertmanager"]["credentials"]["httpHeaderAuth"]["id"] == "hybridAlertToken"
    for hook in hooks.values():
        assert hook["parameters"]["httpMethod"] == "POST" and hook["parameters"]["responseMode"] == "responseNode"
        assert UUID.match(hook["webhookId"])
    hourly = nodes_by_type(load("cost_monitor.json"), "scheduleTrigger")[0]["parameters"]["rule"]["interval"][0]
    assert hourly == {"field": "hours", "hoursInterval": 1}
    weekly = nodes_by_type(load("performance_monitor.json"), "scheduleTrigger")[0]["parameters"]["rule"]["interval"][0]
    assert weekly["field"] == "weeks"
    for name in ("cost_monitor.json", "performance_monitor.json", "readiness_watcher.json"):
        assert nodes_by_type(load(name), "manualTrigger"), f"{name}: 'Run now' for people and for n8n execute"
    assert nodes_by_type(load("error_notifier.json"), "errorTrigger")


@pytest.mark.parametrize("name", sorted(FILES))
def test_failures_are_reported_retried_and_timed_after_the_gateway(name):
    """Review finding 11: every workflow names the Error notifier; safe GETs retry; a chat call waits longer than
    the gateway's deadline, so the caller gets the gateway's 504 and not n8n's timeout."""
    wf = load(name)
    if name == "error_notifier.json":
        assert "errorWorkflow" not in wf["settings"]
    else:
        assert wf["settings"]["errorWorkflow"] == "hybridErrorNotif"
    for n in nodes_by_type(wf, "httpRequest"):
        p = n["parameters"]
        if p["method"] == "GET":
            assert n.get("retryOnFail") is True and n["maxTries"] >= 2, n["name"]
        if "/api/v1/chat" in p["url"]:
            assert p["options"]["timeout"] > GATEWAY_DEADLINE_MS, n["name"]


def test_compose_imports_and_publishes_them():
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    job, app = compose["services"]["n8n-import"], compose["services"]["n8n"]
    assert job["entrypoint"] == ["/bin/sh", "/workflows/import.sh", "/workflows"]
    assert "./workflows:/workflows:ro" in job["volumes"]
    # imports each workflow once (tests/integration/test_n8n_workflows.py)
    script = (WORKFLOWS / "import.sh").read_text()
    assert 'n8n import:workflow --input="$file"' in script and 'n8n publish:workflow --id="$id"' in script
    assert 'n8n import:credentials --input="$creds/credentials.json"' in script
    for var in ("GATEWAY_URL", "PROMETHEUS_URL", "ALERT_WEBHOOK_URL", "COST_ALERT_SHARE", "REPORT_WINDOW"):
        assert var in app["environment"] and var in job["environment"], var
    used = {m for f in FILES for m in re.findall(r"\$env\.([A-Z_]+)", (WORKFLOWS / f).read_text())}
    assert used <= set(app["environment"]), f"workflows read $env.{used - set(app['environment'])}; n8n lacks it"
    # Review finding 11: whoever edits a workflow can read n8n's environment ($env): no secret is in it. The
    # keys reach the workflows as credentials the import job writes; n8n's own secrets are files.
    for secret in ("GATEWAY_API_KEY", "ALERTMANAGER_WEBHOOK_TOKEN", "N8N_ENCRYPTION_KEY", "DB_POSTGRESDB_PASSWORD"):
        assert secret not in app["environment"], secret
    assert {"GATEWAY_API_KEY", "ALERTMANAGER_WEBHOOK_TOKEN"} <= set(job["environment"])
    mounted = {c["target"] for c in app["configs"]}
    for var in ("N8N_ENCRYPTION_KEY_FILE", "DB_POSTGRESDB_PASSWORD_FILE"):
        assert app["environment"][var] in mounted and job["environment"][var] in mounted, var
    assert app["environment"]["N8N_METRICS_INCLUDE_MESSAGE_EVENT_BUS_METRICS"] == "true"
    # Alertmanager's one webhook is n8n's alert router, with its token
    alertmanager = compose["services"]["alertmanager"]["environment"]
    assert alertmanager["ALERTMANAGER_WEBHOOK_URL"].endswith("-http://n8n:5678/webhook/alertmanager}")
    assert alertmanager["ALERTMANAGER_WEBHOOK_TOKEN"].startswith("${ALERTMANAGER_WEBHOOK_TOKEN:?")
    assert Path(ROOT / ".env.example").read_text().count("ALERT_WEBHOOK_URL=") == 1


def run_check_spend(budget: dict, now: str, memory: dict, limit_env: str = "0") -> tuple[dict, dict]:
    """The cost monitor's "Check spend" code under node, with n8n's $, $env and static data stood in for."""
    import shutil
    import subprocess
    from datetime import datetime

    node = shutil.which("node")
    assert node, "node is needed (scripts/tools.sh installs n8n with it)"
    code = next(n for n in load("cost_monitor.json")["nodes"] if n["name"] == "Check spend")["parameters"]["jsCode"]
    stamp = datetime.fromisoformat(now).timestamp() * 1000
    harness = f"""
const memory = {json.dumps(memory)};
const inputs = {{ Budget: {json.dumps(budget)}, Stats: {{ requests: 10, local_share: 0.5, spend_this_month: {{}} }} }};
const $ = (name) => ({{ first: () => ({{ json: inputs[name] }}) }});
const $env = {{ COST_ALERT_BUDGET_USD: {json.dumps(limit_env)}, ALERT_WEBHOOK_URL: 'http://hook' }};
const $getWorkflowStaticData = () => memory;
Date.now = () => {stamp};
const out = (function () {{ {code} }})();
process.stdout.write(JSON.stringify({{ result: out[0].json, memory }}));
"""
    done = subprocess.run([node, "-e", harness], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)
    return parsed["result"], parsed["memory"]


def test_cost_monitor_projects_from_its_own_day_of_readings_never_the_first_hour():
    """Review finding 11: on the 1st of the month the old check multiplied an hour's spend by 31 and alerted; and
    it re-sent the same alert every hour. Now the pace comes from the workflow's own readings over the last day
    (6 h at least), and each reason is sent once a month."""
    budget = {"month": "2026-12", "limit_usd": 20, "spent_usd": 1.0, "reserved_usd": 0}
    first_hour, memory = run_check_spend(budget, "2026-12-01T01:00:00+00:00", {})
    assert first_hour["alert"] is False and first_hour["figures"]["projected_usd"] is None  # before: $744 projected

    memory = {"month": "2026-12", "sent": [], "readings": [[datetime_ms("2026-12-10T04:00:00"), 5.0]]}
    paced, memory = run_check_spend(dict(budget, spent_usd=8.0), "2026-12-10T12:00:00+00:00", memory)
    # $3 in 8 h = $0.375/h; 21.5 days left: $8 + $193.5
    assert paced["alert"] is True and paced["figures"]["projected_usd"] == pytest.approx(201.5)
    assert "projects $201.5000 by the month's end" in paced["notification"]["text"]
    assert memory["sent"] == ["pace"] and len(memory["readings"]) == 2

    again, memory = run_check_spend(dict(budget, spent_usd=8.4), "2026-12-10T13:00:00+00:00", memory)
    assert again["alert"] is False and again["already_sent"] == 1 and again["webhook"] is False

    worse, memory = run_check_spend(dict(budget, spent_usd=17.0), "2026-12-10T14:00:00+00:00", memory)
    assert worse["alert"] is True and "80% of the budget" not in worse["notification"]["text"]
    assert "85% of the budget (alert at 80%)" in worse["notification"]["text"] and "projects" not in \
        worse["notification"]["text"], "only what is new is said"

    stale = {"month": "2026-12", "sent": ["share", "pace"], "readings": [[datetime_ms("2026-12-31T20:00:00"), 19.0]]}
    new_month, memory = run_check_spend({"month": "2027-01", "limit_usd": 20, "spent_usd": 17.0},
                                        "2027-01-01T02:00:00+00:00", stale)
    assert new_month["alert"] is True and memory["sent"] == ["share"] and len(memory["readings"]) == 1


def datetime_ms(iso: str) -> float:
    from datetime import UTC, datetime

    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000
