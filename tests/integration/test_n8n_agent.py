"""n8n's AI Agent with its OpenAI Chat Model node, in a real n8n 2.8.4, pointed at the gateway: at the node's
defaults (Responses API on: POST {base}/responses) and with the toggle off (chat completions), a Calculator
tool attached. The agent's model call goes through the gateway to a local model of the tools preset (a fake
Ollama), which calls the tool; n8n runs it and sends the result back; the model answers with it.

Select with `pytest -m n8n`."""

from __future__ import annotations

import json
import os
import time

import pytest
import requests

from tests.fakes import Script
from tests.integration.test_n8n_workflows import KEY, WORKFLOWS, N8n, cached_tool

pytestmark = [pytest.mark.integration, pytest.mark.n8n, pytest.mark.timeout(300)]


CALCULATOR = {"id": "n4", "name": "Calculator", "type": "@n8n/n8n-nodes-langchain.toolCalculator", "typeVersion": 1,
              "position": [400, 200], "parameters": {}}


def agent_workflow(workflow_id: str, responses_api: bool | None, agent_version: float, tool: dict = CALCULATOR
                   ) -> dict:
    """Manual trigger -> AI Agent with the OpenAI Chat Model (v1.3; `None`: the toggle left at its
    default) and a tool (the Calculator unless told)."""
    model_params: dict = {"model": {"__rl": True, "mode": "id", "value": "auto"}, "options": {}}
    if responses_api is not None:
        model_params["responsesApiEnabled"] = responses_api
    return {
        "id": workflow_id, "name": f"Agent {workflow_id}", "active": False, "settings": {}, "connections": {
            "Start": {"main": [[{"node": "AI Agent", "type": "main", "index": 0}]]},
            "OpenAI Chat Model": {"ai_languageModel": [[{"node": "AI Agent", "type": "ai_languageModel",
                                                         "index": 0}]]},
            tool["name"]: {"ai_tool": [[{"node": "AI Agent", "type": "ai_tool", "index": 0}]]}},
        "nodes": [
            {"id": "n1", "name": "Start", "type": "n8n-nodes-base.manualTrigger", "typeVersion": 1,
             "position": [0, 0], "parameters": {}},
            {"id": "n2", "name": "AI Agent", "type": "@n8n/n8n-nodes-langchain.agent", "typeVersion": agent_version,
             "position": [200, 0], "parameters": {"promptType": "define", "text": "What is 6 times 7?",
                                                  "options": {}}},
            {"id": "n3", "name": "OpenAI Chat Model", "type": "@n8n/n8n-nodes-langchain.lmChatOpenAi",
             "typeVersion": 1.3, "position": [200, 200], "parameters": model_params,
             "credentials": {"openAiApi": {"id": "gatewayCred01", "name": "Hybrid AI gateway"}}},
            tool,
        ]}


@pytest.fixture
def n8n_home(tmp_path) -> N8n:
    return N8n(cached_tool("n8n"), tmp_path / "n8n")


@pytest.fixture
def n8n_served(tmp_path) -> N8n:
    """An n8n home with the shipped workflows too: N8n.serve waits on the orchestrate webhook."""
    instance = N8n(cached_tool("n8n"), tmp_path / "n8n-served")
    out = instance.cli("import:workflow", "--separate", f"--input={WORKFLOWS}")
    assert out.returncode == 0, out.stdout + out.stderr
    return instance


def import_into(n8n: N8n, tmp_path, url: str, flow: dict) -> None:
    credential = [{"id": "gatewayCred01", "name": "Hybrid AI gateway", "type": "openAiApi",
                   "data": {"apiKey": KEY, "url": f"{url}/v1"}}]
    for name, data in (("cred.json", credential), ("flow.json", flow)):
        (tmp_path / name).write_text(json.dumps(data))
    for command, name in (("import:credentials", "cred.json"), ("import:workflow", "flow.json")):
        out = n8n.cli(command, f"--input={tmp_path / name}")
        assert out.returncode == 0, out.stdout + out.stderr


def check_round_trip(ollama, log, route: str, tool: str, args: dict, result: str | None) -> None:
    """The agent's two model calls reached the local model through `route`: the first offered the tool, the
    second carried the call and the tool's result (`result` in it; None: whatever n8n gave) back."""
    first, second = ollama.calls("/api/chat")[-2:]
    assert [t["function"]["name"] for t in first.body["tools"]] == [tool]
    assert first.body["model"] == "qwen3:0.6b"  # a simple prompt: the local model of the tools preset
    call = next(m for m in second.body["messages"] if m.get("tool_calls"))["tool_calls"][0]
    sent = next(m for m in second.body["messages"] if m["role"] == "tool")
    assert call["function"]["name"] == tool and args.items() <= call["function"]["arguments"].items()
    assert sent["tool_name"] == tool and sent["tool_call_id"] == call["id"]
    assert result is None or result in sent["content"]
    routes = [json.loads(line).get("route") for line in log.read_text().splitlines() if '"route"' in line]
    assert routes.count(route) == 2, routes


def script_the_model(ollama, tool: str, args: dict, answer: str) -> None:
    ollama.installed |= {"qwen3:0.6b", "qwen3-vl:2b"}
    ollama.queue(Script(reply="", tool_calls=[{"name": tool, "arguments": args}]), Script(reply=answer))


def test_agent_2_over_chat_completions_runs_the_tool_with_n8n_execute(n8n_home, gunicorn, ollama, tmp_path):
    """The OpenAI Chat Model with "Use Responses API" off: n8n's Agent 2.2 (it refuses the Responses API), the
    Calculator tool, run with `n8n execute`."""
    url, _, log = gunicorn(MODEL_PRESET="tools")
    import_into(n8n_home, tmp_path, url, agent_workflow("hybridAgentTest1", False, 2.2))
    script_the_model(ollama, "Calculator", {"input": "6 * 7"}, "6 times 7 is 42.")
    nodes = n8n_home.execute("hybridAgentTest1")
    assert nodes["AI Agent"][0][0]["output"] == "6 times 7 is 42."
    check_round_trip(ollama, log, "/v1/chat/completions", "Calculator", {"input": "6 * 7"}, "42")


@pytest.mark.parametrize("responses_api", [None, False], ids=["responses_default", "chat_completions"])
def test_agent_3_at_the_model_nodes_defaults_answers_a_webhook(n8n_served, gunicorn, ollama, tmp_path,
                                                               responses_api):
    """The current Agent (3) behind a webhook in a running n8n, the OpenAI Chat Model at its defaults (Responses
    API on), and with the toggle off, the Calculator as its tool.

    Agent 3 runs each tool as an engine request, and in n8n 2.8.4 (with `n8n start` as with `n8n execute`, and
    with the HTTP Request node as the tool too) the result it hands back to the model is empty ('""'): the
    gateway passes on the call and whatever result it is given, and the answer comes back; Agent 2.2 above shows
    a tool's result reaching the model."""
    url, _, log = gunicorn(MODEL_PRESET="tools")
    flow = agent_workflow("hybridAgentHook1", responses_api, 3)
    flow["nodes"][0] = {"id": "n1", "name": "Start", "type": "n8n-nodes-base.webhook", "typeVersion": 2,
                        "position": [0, 0], "webhookId": "5f0c3d1e-agent-test",
                        "parameters": {"httpMethod": "POST", "path": "agent-test", "responseMode": "responseNode",
                                       "options": {}}}
    flow["nodes"][1]["parameters"]["text"] = "={{ $json.body.question }}"
    flow["nodes"].append({"id": "n5", "name": "Respond", "type": "n8n-nodes-base.respondToWebhook",
                          "typeVersion": 1.1, "position": [400, 0], "parameters": {"respondWith": "firstIncomingItem",
                                                                                   "options": {}}})
    flow["connections"]["AI Agent"] = {"main": [[{"node": "Respond", "type": "main", "index": 0}]]}
    import_into(n8n_served, tmp_path, url, flow)
    for workflow_id in ("hybridAgentHook1", "hybridOrchestrat"):
        out = n8n_served.cli("publish:workflow", f"--id={workflow_id}")
        assert out.returncode == 0, out.stdout + out.stderr
    script_the_model(ollama, "Calculator", {"input": "6 * 7"}, "6 times 7 is 42.")
    with n8n_served.serve(tmp_path / "n8n.log", GATEWAY_URL=url) as n8n_url:
        r = requests.post(f"{n8n_url}/webhook/agent-test", json={"question": "What is 6 times 7?"}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "6 times 7 is 42."
    check_round_trip(ollama, log, "/v1/responses" if responses_api is None else "/v1/chat/completions",
                     "Calculator", {"input": "6 * 7"}, None)


def test_shipped_agent_error_notifier_metrics_and_alert_router(n8n_served, gunicorn, ollama, claude, receiver,
                                                               tmp_path):
    """The shipped workflows in a running n8n, as ./install.sh leaves them: the AI Agent answers through the
    gateway with the OpenAI credential import.sh makes (base URL: the gateway); when the gateway fails it, the
    Error notifier posts what failed and n8n's own metrics count it (the N8nWorkflowFailing alert); a real
    Alertmanager's webhook reaches the alert router, which forwards it, and nobody without the token can."""
    import subprocess

    from tests.conftest import free_port
    from tests.integration.test_n8n_workflows import ALERT_TOKEN, ROOT

    url, _, _ = gunicorn(MODEL_PRESET="tools")
    n8n_served.credentials(gateway_url=url)
    for workflow_id in ("hybridAgentTools", "hybridOrchestrat", "hybridAlertRoute", "hybridErrorNotif"):
        out = n8n_served.cli("publish:workflow", f"--id={workflow_id}")
        assert out.returncode == 0, out.stdout + out.stderr
    script_the_model(ollama, "Calculator", {"input": "6 * 7"}, "6 times 7 is 42.")
    metrics = {"N8N_METRICS": "true", "N8N_METRICS_INCLUDE_MESSAGE_EVENT_BUS_METRICS": "true",
               "N8N_METRICS_INCLUDE_WORKFLOW_NAME_LABEL": "true"}
    with n8n_served.serve(tmp_path / "n8n.log", GATEWAY_URL=url, ALERT_WEBHOOK_URL=receiver.url,
                          **metrics) as n8n_url:
        ok = requests.post(f"{n8n_url}/webhook/agent", json={"question": "What is 6 times 7?"}, timeout=120)
        assert ok.status_code == 200 and ok.json()["output"] == "6 times 7 is 42.", ok.text

        ollama.default = Script(status=500)
        claude.default = Script(status=500)
        failed = requests.post(f"{n8n_url}/webhook/agent", json={"question": "What is 6 times 7?"}, timeout=120)
        assert failed.status_code == 502 and failed.json()["error"]["type"] == "agent_failed", failed.text[:800]
        deadline = time.monotonic() + 60
        while not receiver.received:
            assert time.monotonic() < deadline, "the Error notifier never posted"
            time.sleep(0.5)
        [notice] = receiver.received
        assert notice["failure"]["workflow"] == "AI Agent through the gateway"
        assert notice["failure"]["node"] == "Report the failure"
        assert notice["failure"]["message"].startswith("the agent failed: ")
        assert notice["title"] == 'Hybrid AI Stack: n8n workflow "AI Agent through the gateway" failed'
        counted = requests.get(f"{n8n_url}/metrics", timeout=10).text
        assert 'n8n_workflow_failed_total{workflow_name="AI Agent through the gateway"} 1' in counted, \
            [line for line in counted.splitlines() if "workflow_failed" in line]

        hook = f"{n8n_url}/webhook/alertmanager"
        assert requests.post(hook, json={"alerts": []}, timeout=10).status_code in (401, 403)
        assert requests.post(hook, json={"alerts": []}, timeout=10,
                             headers={"Authorization": "Bearer wrong"}).status_code in (401, 403)
        config = tmp_path / "alertmanager.yml"
        subprocess.run(["sh", str(ROOT / "configs/alertmanager/render.sh"), str(config)], check=True, timeout=30,
                       env={"PATH": os.environ["PATH"], "ALERTMANAGER_WEBHOOK_URL": hook,
                            "ALERTMANAGER_WEBHOOK_TOKEN": ALERT_TOKEN})
        config.write_text(config.read_text().replace("group_wait: 30s", "group_wait: 1s"))  # the test's patience
        port = free_port()
        am = subprocess.Popen(["prometheus-alertmanager", f"--config.file={config}",
                               f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{port}",
                               "--cluster.listen-address="], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, "alertmanager never became ready"
                time.sleep(0.3)
            alert = {"labels": {"alertname": "GatewayDown", "severity": "critical", "instance": "gw:8080"},
                     "annotations": {"summary": "API gateway gw:8080 is down",
                                     "runbook_url": "docs/runbook.md#gatewaydown"}}
            assert requests.post(f"http://127.0.0.1:{port}/api/v2/alerts", json=[alert], timeout=10).ok
            deadline = time.monotonic() + 60
            while len(receiver.received) < 2:
                assert time.monotonic() < deadline, "Alertmanager's alert never reached the webhook"
                time.sleep(0.5)
        finally:
            am.terminate()
            am.wait(timeout=30)
    forwarded = receiver.received[1]
    assert forwarded["title"] == "Hybrid AI Stack: firing: GatewayDown"
    assert "[CRITICAL] GatewayDown: API gateway gw:8080 is down (runbook: docs/runbook.md#gatewaydown)" in \
        forwarded["text"]
    assert forwarded["alerts"][0]["labels"]["instance"] == "gw:8080"
