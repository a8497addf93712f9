"""workflows/ in a real n8n (the pinned 2.8.4, from scripts/tools.sh): imported, node types checked against
n8n's own catalogue, and executed against the gateway under gunicorn with fake upstreams, a real Redis and a
real Prometheus; alerts and reports land on a notification receiver on loopback. n8n makes no outbound call.

Select with `pytest -m n8n`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, cached_tool, free_port
from tests.fakes import Script

pytestmark = [pytest.mark.integration, pytest.mark.n8n, pytest.mark.timeout(300)]
WORKFLOWS = ROOT / "workflows"
IDS = {"hybridSmartRoute", "hybridCostMonitr", "hybridPerfReport", "hybridOrchestrat", "hybridErrorNotif",
       "hybridAlertRoute", "hybridReadyWatch", "hybridAgentTools"}
KEY = "integration-key"
ALERT_TOKEN = "alertmanager-token"
DESIGN = "Design a distributed system for real-time chat at scale, with fault tolerance and consistency trade-offs"
OFFLINE = {  # PLATFORM.md: no diagnostics, version checks, templates or frontend hooks
    "N8N_DIAGNOSTICS_ENABLED": "false", "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
    "N8N_TEMPLATES_ENABLED": "false", "N8N_DIAGNOSTICS_CONFIG_FRONTEND": "", "N8N_DIAGNOSTICS_CONFIG_BACKEND": "",
    "EXTERNAL_FRONTEND_HOOKS_URLS": "", "N8N_LISTEN_ADDRESS": "127.0.0.1", "N8N_BLOCK_ENV_ACCESS_IN_NODE": "false",
}


class N8n:
    def __init__(self, binary: str, home: Path):
        self.binary, self.home = binary, home

    def env(self, **extra) -> dict[str, str]:
        return {**os.environ, **OFFLINE, "N8N_USER_FOLDER": str(self.home),
                "N8N_RUNNERS_BROKER_PORT": str(free_port()), **extra}

    def cli(self, *args: str, timeout: int = 120, **env) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, *args], env=self.env(**env), capture_output=True, text=True,
                              timeout=timeout)

    def credentials(self, gateway_url: str = "http://api-gateway:8080", key: str = KEY, token: str = ALERT_TOKEN):
        """The credentials workflows/import.sh writes from .env (the same JSON), made here for these values."""
        path = self.home / "credentials.json"
        path.write_text(json.dumps([
            {"id": "hybridGatewayKey", "name": "Hybrid AI gateway key", "type": "httpHeaderAuth",
             "data": {"name": "X-API-Key", "value": key}},
            {"id": "hybridOpenAiGate", "name": "Hybrid AI gateway (OpenAI API)", "type": "openAiApi",
             "data": {"apiKey": key, "url": f"{gateway_url}/v1"}},
            {"id": "hybridAlertToken", "name": "Alertmanager webhook token", "type": "httpHeaderAuth",
             "data": {"name": "Authorization", "value": f"Bearer {token}"}}]))
        out = self.cli("import:credentials", f"--input={path}")
        path.unlink()
        assert out.returncode == 0, out.stdout + out.stderr

    def execute(self, workflow_id: str, **env) -> dict[str, list]:
        """Run a workflow from its manual trigger; each executed node's output items (all branches)."""
        out = self.cli("execute", f"--id={workflow_id}", "--rawOutput", **env)
        start = out.stdout.find("\n{")
        assert out.returncode == 0 and start >= 0, out.stdout[-3000:] + out.stderr[-2000:]
        run = json.loads(out.stdout[start:])
        assert run["status"] == "success", json.dumps(run["data"]["resultData"].get("error"))[:2000]
        nodes = {}
        for name, runs in run["data"]["resultData"]["runData"].items():
            branches = (runs[0].get("data") or {}).get("main") or []
            nodes[name] = [[item["json"] for item in branch or []] for branch in branches]
        return nodes

    @contextlib.contextmanager
    def serve(self, log: Path, **env):
        """`n8n start` on a free port; yields its URL once the orchestrate webhook answers."""
        port = free_port()
        with log.open("w") as out:
            proc = subprocess.Popen([self.binary, "start"], env=self.env(N8N_PORT=str(port), **env), stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, "n8n exited:\n" + log.read_text()[-3000:]
                with contextlib.suppress(requests.RequestException):
                    # An invalid body is answered 400 by the workflow itself, without any model call.
                    if requests.post(f"{url}/webhook/orchestrate", json={}, timeout=5).status_code == 400:
                        break
                assert time.monotonic() < deadline, "n8n webhooks never came up:\n" + log.read_text()[-3000:]
                time.sleep(0.5)
            yield url
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def n8n(tmp_path_factory) -> N8n:
    """A private n8n home (SQLite) with every workflow in workflows/ imported, and the credentials they use."""
    instance = N8n(cached_tool("n8n"), tmp_path_factory.mktemp("n8n"))
    out = instance.cli("import:workflow", "--separate", f"--input={WORKFLOWS}")
    assert out.returncode == 0 and f"Successfully imported {len(IDS)} workflows" in out.stdout, out.stdout + out.stderr
    instance.credentials()
    return instance


def chat(url: str, **body) -> requests.Response:
    return requests.post(f"{url}/api/v1/chat", json=body, headers={"X-API-Key": KEY}, timeout=30)


def test_imported_with_node_types_of_the_pinned_n8n(n8n, tmp_path):
    listed = n8n.cli("list:workflow")
    assert {line.split("|")[0] for line in listed.stdout.splitlines() if "|" in line} >= IDS, listed.stdout
    catalogue = tmp_path / "nodes.json"
    # n8n 2.8.4's export:nodes exits without waiting for its file stream to flush: on a busy machine the
    # file can be empty or cut short. Its loaded catalogue is the one that matters (it leaves out disabled
    # nodes), so ask again rather than read the packages' type files.
    for _ in range(3):
        out = n8n.cli("export:nodes", f"--output={catalogue}")
        assert out.returncode == 0, out.stderr
        with contextlib.suppress(ValueError):
            exported = json.loads(catalogue.read_text())
            break
    else:
        pytest.fail("n8n export:nodes never wrote a complete catalogue")
    versions: dict[str, set] = {}
    for node in exported:
        v = node["version"]
        versions.setdefault(node["name"], set()).update(v if isinstance(v, list) else [v])
    for path in sorted(WORKFLOWS.glob("*.json")):
        for node in json.loads(path.read_text())["nodes"]:
            assert node["type"] in versions, f"{path.name}: {node['type']} does not exist in n8n 2.8.4"
            assert node["typeVersion"] in versions[node["type"]], \
                f"{path.name}: {node['type']} v{node['typeVersion']} not in {sorted(versions[node['type']])}"


def test_cost_monitor_alerts_once_spend_passes_the_threshold(n8n, gunicorn, redis_server, receiver):
    """The key comes from the n8n credential (no GATEWAY_API_KEY in n8n's environment); the alert is sent once
    (the workflow's static data remembers it: before, every hourly run re-sent it); ALERT_EMAIL_TO without an SMTP
    credential fails the e-mail alone, never the run or the webhook alert."""
    # n8n's key is an admin key (./install.sh makes it one): the cost monitor reads every key's spend
    url, _, _ = gunicorn(REDIS_URL=redis_server.url, BUDGET_MONTHLY_USD="0.001", GATEWAY_ADMIN_KEYS=KEY)
    env = {"GATEWAY_URL": url, "ALERT_WEBHOOK_URL": receiver.url, "ALERT_EMAIL_TO": "ops@example.com"}

    quiet = n8n.execute("hybridCostMonitr", **env)
    assert quiet["Check spend"][0][0]["alert"] is False and "Notify webhook" not in quiet
    assert quiet["Check spend"][0][0]["figures"]["projected_usd"] is None, "no pace from one reading"
    assert receiver.received == []

    # Drive real spend through the gateway (two workers sharing Redis) until the soft limit (80 %) is passed.
    for _ in range(80):
        assert chat(url, prompt="Say hello.", model="claude-haiku", max_tokens=20).status_code in (200, 429)
        budget = requests.get(f"{url}/api/v1/budget", headers={"X-API-Key": KEY}, timeout=10).json()
        if budget["soft_limit_reached"]:
            break
    assert budget["soft_limit_reached"], budget

    loud = n8n.execute("hybridCostMonitr", **env)
    check = loud["Check spend"][0][0]
    assert check["alert"] is True and loud["Notify webhook"][0] == [{"data": "ok"}]
    assert len(receiver.received) == 1
    alert = receiver.received[0]
    assert alert["figures"]["spent_usd"] == pytest.approx(budget["spent_usd"], abs=1e-9)
    assert alert["figures"]["budget_usd"] == 0.001 and alert["figures"]["budget_share"] >= 0.8
    assert "% of the budget (alert at 80%)" in alert["text"] and alert["content"] == alert["text"]
    assert "Send e-mail" in loud, "ALERT_EMAIL_TO set: the e-mail was tried, failed alone (no SMTP credential)"

    again = n8n.execute("hybridCostMonitr", **env)  # the next hour: same reasons, nothing new to say
    assert again["Check spend"][0][0]["alert"] is False and again["Check spend"][0][0]["already_sent"] >= 1
    assert "Notify webhook" not in again and len(receiver.received) == 1


def test_cost_monitor_retries_then_fails_loudly(n8n):
    """A gateway that drops every connection: the safe GET is tried 3 times (retry on fail), then the run fails,
    visible in n8n's executions; in a running n8n the Error notifier reports it (tests/integration/test_n8n_agent.py
    shows that path)."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def drop_all():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn.recv(4096).split(b" ", 2)[:2])
            conn.close()

    threading.Thread(target=drop_all, daemon=True).start()
    try:
        out = n8n.cli("execute", "--id=hybridCostMonitr", "--rawOutput",
                      GATEWAY_URL=f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=240)
    finally:
        listener.close()
    assert '"status": "success"' not in out.stdout and "Budget" in out.stdout + out.stderr
    assert accepted == [[b"GET", b"/api/v1/budget"]] * 3, accepted


def test_readiness_watcher_says_each_change_once(n8n, gunicorn, unused_port, receiver):
    down = {"GATEWAY_URL": f"http://127.0.0.1:{unused_port}", "ALERT_WEBHOOK_URL": receiver.url}
    first = n8n.execute("hybridReadyWatch", **down)
    assert first["Compare with the last state"][0][0]["ready"] is False and len(receiver.received) == 1
    assert receiver.received[0]["title"] == "Hybrid AI Stack: the gateway is not ready"
    assert "unreachable" in receiver.received[0]["figures"]["detail"]
    n8n.execute("hybridReadyWatch", **down)  # still down: already said
    assert len(receiver.received) == 1
    url, _, _ = gunicorn()
    back = n8n.execute("hybridReadyWatch", GATEWAY_URL=url, ALERT_WEBHOOK_URL=receiver.url)
    assert back["Compare with the last state"][0][0] == {**back["Compare with the last state"][0][0], "ready": True,
                                                          "changed": True}
    assert [r["title"] for r in receiver.received][-1] == "Hybrid AI Stack: the gateway is ready again"
    n8n.execute("hybridReadyWatch", GATEWAY_URL=url, ALERT_WEBHOOK_URL=receiver.url)
    assert len(receiver.received) == 2


def test_performance_monitor_reports_prometheus_figures(n8n, gunicorn, prometheus, receiver, ollama):
    url, _, _ = gunicorn()
    prom = prometheus(url.removeprefix("http://"))

    def scraped(expr: str) -> float:
        r = requests.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10).json()["data"]["result"]
        return float(r[0]["value"][1]) if r else 0.0

    deadline = time.monotonic() + 60
    while scraped("up") < 1:
        assert time.monotonic() < deadline, "prometheus never scraped the gateway"
        time.sleep(0.5)
    # Two rounds a few scrapes apart, so increase() and rate() over the window see the counters move.
    for round_ in range(2):
        for i in range(4):
            assert chat(url, prompt=f"What is Python {round_}-{i}?").status_code == 200
        assert chat(url, prompt=f"{DESIGN} ({round_})").status_code == 200
        ollama.queue(Script(status=500), Script(status=500), Script(status=500))
        chat(url, prompt=f"Define a byte {round_}.", strategy="local-only", model="tinyllama")
        time.sleep(2.5)
    while scraped("sum(increase(api_gateway_requests_total[5m]))") <= 0:
        assert time.monotonic() < deadline, "no request increase in prometheus"
        time.sleep(0.5)

    nodes = n8n.execute("hybridPerfReport", PROMETHEUS_URL=prom, ALERT_WEBHOOK_URL=receiver.url, REPORT_WINDOW="5m")
    assert len(nodes["Query Prometheus"][0]) == 6
    assert len(receiver.received) == 1
    report = receiver.received[0]
    figures = report["figures"]
    assert figures["window"] == "5m" and figures["requests"] > 0
    assert 0 < figures["local_share"] < 1, "local and cloud answers were both sent"
    assert set(figures["p95_seconds_by_backend"]) >= {"ollama", "anthropic"}
    assert 0 < figures["error_ratio"] < 1, "the failed tinyllama calls are 5xx answers"
    assert figures["spend_usd"] > 0 and figures["savings_usd"] > 0
    for line in ("requests:", "answered locally:", "p95 latency: ", "failed (5xx or a stream cut part-way):",
                 "cloud spend: $"):
        assert line in report["text"]


def test_webhooks_answer_through_the_gateway(n8n, gunicorn, ollama, claude, tmp_path):
    url, _, _ = gunicorn()
    for workflow_id in ("hybridSmartRoute", "hybridOrchestrat"):
        out = n8n.cli("publish:workflow", f"--id={workflow_id}")
        assert out.returncode == 0, out.stdout + out.stderr
    with n8n.serve(tmp_path / "n8n.log", GATEWAY_URL=url) as n8n_url:
        ask = lambda path, body: requests.post(f"{n8n_url}/webhook/{path}", json=body, timeout=60)  # noqa: E731

        simple = ask("ai-request", {"prompt": "What is Python?"})
        assert simple.status_code == 200, simple.text
        body = simple.json()
        assert body["answer"] == "Hello from the fake." and body["model"] == "tinyllama"
        assert body["cost_usd"] == 0 and body["routing"]["tier"] == "local-small"
        assert "complexity" in body["routing"]["reason"] and len(body["request_id"]) == 32

        hard = ask("ai-request", {"prompt": DESIGN}).json()
        assert hard["backend"] == "anthropic" and hard["cost_usd"] > 0 and hard["routing"]["tier"] == "cloud"
        assert ask("ai-request", {"prompt": DESIGN, "strategy": "local-only"}).json()["backend"] == "ollama"

        missing = ask("ai-request", {"text": "no prompt field"})
        assert missing.status_code == 400
        assert missing.json()["error"]["message"] == "missing 'prompt' (or 'messages')" and missing.json()["request_id"]
        bad = ask("ai-request", {"prompt": "hi", "strategy": "fastest"})
        assert bad.status_code == 422 and "'strategy' must be one of" in bad.json()["error"]["message"]
        ollama.default = Script(status=500)
        down = ask("ai-request", {"prompt": "What is Python?", "strategy": "local-only"})
        assert down.status_code in (502, 503) and down.json()["error"]["message"], down.text
        ollama.default = Script()

        claude.default = Script(reply="A sharded, replicated design.")
        result = ask("orchestrate", {"task": DESIGN})
        assert result.status_code == 200, result.text
        steps = result.json()["steps"]
        assert [s["step"] for s in steps] == ["classify", "answer", "summarize"]
        assert steps[0]["backend"] == "ollama" and steps[2]["backend"] == "ollama"
        assert steps[1]["backend"] == "anthropic" and steps[1]["output"] == "A sharded, replicated design."
        assert steps[1]["cost_usd"] > 0 and steps[0]["cost_usd"] == 0 == steps[2]["cost_usd"]
        assert result.json()["total_cost_usd"] == pytest.approx(sum(s["cost_usd"] for s in steps), abs=1e-8)
        # Step 3 summarised step 2's answer, through the gateway.
        assert "A sharded, replicated design." in ollama.calls("/api/chat")[-1].body["messages"][-1]["content"]

        doc = ask("orchestrate", {"document": "Quarterly report: revenue rose 4 %."})
        assert doc.status_code == 200 and all(s["ok"] for s in doc.json()["steps"])
        rejected = ask("orchestrate", {"document": "   "})
        assert rejected.status_code == 400 and "'document' or 'task'" in rejected.json()["error"]["message"]


def test_the_import_job_imports_each_workflow_once_and_keeps_edited_ones(tmp_path):
    """workflows/import.sh (the n8n-import job of docker-compose.yml, run on every `up`) with the real n8n: the
    credentials are written from the job's environment each run (a rotated key reaches n8n); a workflow a user
    edited in n8n survives the next run; a workflow new in workflows/ is imported."""
    instance = N8n(cached_tool("n8n"), tmp_path / "home")
    path = f"{Path(instance.binary).parent}:{os.environ['PATH']}"
    shipped = tmp_path / "workflows"
    shipped.mkdir()
    for f in sorted(WORKFLOWS.glob("*.json"))[:2]:
        (shipped / f.name).write_text(f.read_text())

    def run_job(key="gw-n8n-first"):
        env = instance.env(PATH=path, GATEWAY_API_KEY=key, ALERTMANAGER_WEBHOOK_TOKEN="am-token",
                           GATEWAY_URL="http://gateway.internal:8080/")
        out = subprocess.run(["sh", str(WORKFLOWS / "import.sh"), str(shipped)], env=env, capture_output=True,
                             text=True, timeout=240)
        assert out.returncode == 0, out.stdout + out.stderr
        assert key not in out.stdout + out.stderr, "the job never prints a key"
        return out.stdout

    def stored_credentials() -> dict:
        dump = tmp_path / "credentials.json"
        assert instance.cli("export:credentials", "--all", "--decrypted", f"--output={dump}").returncode == 0
        return {c["id"]: c["data"] for c in json.loads(dump.read_text())}

    first = run_job()
    assert first.count("imported and published") == 2
    assert stored_credentials() == {
        "hybridGatewayKey": {"name": "X-API-Key", "value": "gw-n8n-first"},
        "hybridOpenAiGate": {"apiKey": "gw-n8n-first", "url": "http://gateway.internal:8080/v1"},
        "hybridAlertToken": {"name": "Authorization", "value": "Bearer am-token"}}
    one = json.loads(sorted(shipped.glob("*.json"))[0].read_text())
    edited = dict(one, name="Edited by the user in n8n")  # what an edit in the editor leaves in n8n's database
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    assert instance.cli("import:workflow", f"--input={tmp_path / 'edited.json'}").returncode == 0
    new = sorted(WORKFLOWS.glob("*.json"))[2]
    (shipped / new.name).write_text(new.read_text())  # the next release ships a third workflow

    second = run_job(key="gw-n8n-rotated")  # the key rotated in .env: the credentials follow, workflows stay
    assert second.count("kept as it is") == 2 and second.count("imported and published") == 1
    assert stored_credentials()["hybridGatewayKey"]["value"] == "gw-n8n-rotated"
    exported = instance.cli("export:workflow", f"--id={one['id']}")
    assert "Edited by the user in n8n" in exported.stdout, exported.stdout[-2000:]
