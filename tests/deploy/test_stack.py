"""The stack files, checked with the real validators (Compose, hadolint, shellcheck) plus what they
do not check: files that must exist, variables that must be documented, what must not be published."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

VENV_BIN = Path(__import__("sys").executable).parent
COMPOSE = ROOT / "docker-compose.yml"
SECRETS = {"GATEWAY_API_KEYS": "k1,k2", "GATEWAY_ADMIN_KEYS": "a1", "REDIS_PASSWORD": "r",
           "GRAFANA_ADMIN_PASSWORD": "g", "POSTGRES_PASSWORD": "p", "N8N_ENCRYPTION_KEY": "n", "QDRANT_API_KEY": "q",
           "METRICS_TOKEN": "m", "ALERTMANAGER_WEBHOOK_TOKEN": "w", "N8N_GATEWAY_API_KEY": "a1"}
SCRIPTS = [ROOT / "install.sh", ROOT / "deploy-all.sh", ROOT / ".ci" / "run", *sorted((ROOT / "scripts").rglob("*.sh")),
           *sorted((ROOT / "examples").glob("*.sh")), ROOT / "workflows" / "import.sh"]


def tool(name: str) -> str:
    path = shutil.which(name, path=str(VENV_BIN)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (pip install -e '.[test]')")
    return path


def compose_env(**extra) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "DEPLOYMENT_"))},
            **SECRETS, **extra}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
@pytest.mark.parametrize("tier", ["1", "2", "3", "4"])
def test_compose_config_is_valid_for_every_profile_and_tier(profile, tier, tmp_path):
    models = subprocess.run([__import__("sys").executable, "scripts/tiers.py", "models", tier], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.strip()
    out = subprocess.run([tool("docker-compose"), "--env-file", str(ROOT / ".env.example"), "-f", str(COMPOSE),
                          "--profile", profile, "config", "--format", "json"], cwd=ROOT, capture_output=True,
                         text=True, env=compose_env(DEPLOYMENT_TIER=tier, OLLAMA_MODELS_TO_PULL=models), timeout=60)
    assert out.returncode == 0, out.stderr
    config = __import__("json").loads(out.stdout)
    services = set(config["services"])
    assert f"ollama-{profile}" in services and f"ollama-pull-{profile}" in services
    other = "gpu" if profile == "cpu" else "cpu"
    assert f"ollama-{other}" not in services
    assert config["services"]["api-gateway"]["environment"]["DEPLOYMENT_TIER"] == tier
    assert config["services"][f"ollama-pull-{profile}"]["environment"]["OLLAMA_MODELS_TO_PULL"] == models
    aliases = config["services"][f"ollama-{profile}"]["networks"]["backend"]["aliases"]
    assert aliases == ["ollama"]  # the gateway's OLLAMA_URL never changes with the profile


def _pull_job(tmp_path, failures: int, tries: int = 3) -> subprocess.CompletedProcess:
    """The ollama-pull job's script as Compose renders it, against an ollama CLI whose pull of "phi" fails the
    first `failures` times."""
    out = subprocess.run([tool("docker-compose"), "--env-file", str(ROOT / ".env.example"), "-f", str(COMPOSE),
                          "--profile", "cpu", "config", "--format", "json"], cwd=ROOT, capture_output=True,
                         text=True, env=compose_env(OLLAMA_MODELS_TO_PULL="tinyllama phi"), timeout=60, check=True)
    job = json.loads(out.stdout)["services"]["ollama-pull-cpu"]
    script = job["command"][0].replace("$$", "$")
    fake = tmp_path / "bin" / "ollama"
    fake.parent.mkdir()
    fake.write_text(f"""#!/bin/sh
echo "$*" >> {tmp_path}/calls
[ "$1" = list ] && exit 0
if [ "$2" = phi ] && [ "$(grep -c 'pull phi' {tmp_path}/calls)" -le {failures} ]; then echo "EOF" >&2; exit 1; fi
""")
    fake.chmod(0o755)
    env = {**job["environment"], "PATH": f"{fake.parent}:/usr/bin:/bin", "OLLAMA_PULL_TRIES": str(tries),
           "OLLAMA_PULL_RETRY_SECONDS": "0"}
    return subprocess.run([*job["entrypoint"], script], env=env, capture_output=True, text=True, timeout=30)


def test_model_pull_is_retried_until_it_succeeds(tmp_path):
    done = _pull_job(tmp_path, failures=2)
    assert done.returncode == 0, done.stdout + done.stderr
    calls = (tmp_path / "calls").read_text().split("\n")
    assert calls.count("pull phi") == 3 and calls.count("pull tinyllama") == 1
    assert "failed (try 2 of 3)" in done.stdout and "models ready: tinyllama phi" in done.stdout


def test_model_pull_gives_up_after_its_tries(tmp_path):
    done = _pull_job(tmp_path, failures=10)
    assert done.returncode == 1 and "could not pull phi (3 tries)" in done.stdout
    assert (tmp_path / "calls").read_text().split("\n").count("pull phi") == 3


def test_compose_refuses_to_start_without_secrets():
    out = subprocess.run([tool("docker-compose"), "--env-file", str(ROOT / ".env.example"), "-f", str(COMPOSE),
                          "--profile", "cpu", "config", "--quiet"], cwd=ROOT, capture_output=True, text=True,
                         env=compose_env(**{k: "" for k in SECRETS}), timeout=60)
    assert out.returncode != 0 and "./install.sh generates" in out.stderr


def test_build_contexts_and_mounted_files_exist(compose):
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"


def test_every_variable_is_documented_in_env_example():
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert used <= documented, sorted(used - documented)
    keys = re.findall(r"^([A-Z_][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    assert len(keys) == len(set(keys)), "duplicate keys in .env.example"


def test_internal_services_are_not_published_and_admin_uis_stay_local(compose):
    services = compose["services"]
    for name in ("redis", "ollama-cpu", "ollama-gpu", "qdrant", "postgres", "ollama-pull-cpu", "n8n-import"):
        assert "ports" not in services[name], name
    assert services["prometheus"]["ports"][0].startswith("127.0.0.1:")
    for name in ("grafana", "n8n"):
        assert services[name]["ports"][0].startswith("${ADMIN_BIND:-127.0.0.1}:"), name
    # the edge is the gateway's only door (tests/integration/test_edge.py: what it holds off)
    assert "ports" not in services["api-gateway"]
    assert services["edge"]["ports"] == ["${GATEWAY_BIND:-0.0.0.0}:${GATEWAY_PORT:-8080}:8080"]


def _rendered(*files: str, **env) -> dict:
    args = [a for f in ("docker-compose.yml", *files) for a in ("-f", str(ROOT / f))]
    out = subprocess.run([tool("docker-compose"), "--env-file", str(ROOT / ".env.example"), *args, "--profile", "cpu",
                          "config", "--format", "json"], cwd=ROOT, capture_output=True, text=True,
                         env=compose_env(**env), timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_edge_network_holds_the_edge_and_the_gateway_alone():
    config = _rendered()
    on_edge = {name for name, svc in config["services"].items() if "edge" in (svc.get("networks") or {})}
    assert on_edge == {"edge", "api-gateway"} and set(config["services"]["edge"]["networks"]) == {"edge"}
    subnet = config["networks"]["edge"]["ipam"]["config"][0]["subnet"]
    # the gateway believes X-Forwarded-For from that network only, i.e. from the edge
    assert config["services"]["api-gateway"]["environment"]["TRUSTED_PROXIES"] == subnet
    edge = config["services"]["edge"]
    assert edge["environment"]["EDGE_UPSTREAM"] == "api-gateway:8080"
    assert edge["environment"]["MAX_BODY_BYTES"] == "8388608"  # the gateway's own limit, from .env
    # the image is the Caddy line the tests run (Debian's caddy here): the same Caddyfile semantics
    version = subprocess.run([tool("caddy"), "version"], capture_output=True, text=True).stdout
    assert edge["image"].split(":")[1].startswith(".".join(version.lstrip("v").split(".")[:2]) + ".")


def test_tls_publishes_80_and_443_and_keeps_the_plain_port_local(tmp_path):
    config = _rendered("docker-compose.tls.yml", GATEWAY_DOMAIN="api.example.com", GATEWAY_BIND="127.0.0.1",
                       TLS_EMAIL="ops@example.com")
    edge = config["services"]["edge"]
    assert edge["environment"]["EDGE_EMAIL_OPTION"] == "email ops@example.com"
    published = {(p.get("host_ip", ""), p["published"], p["target"]) for p in edge["ports"]}
    assert published >= {("127.0.0.1", "8080", 8080), ("", "80", 80), ("", "443", 443)}
    assert edge["environment"]["EDGE_ADDRESS"] == "api.example.com, :8080"
    assert "ports" not in config["services"]["api-gateway"]
    # the real Caddy accepts the Caddyfile for that address: HTTPS on 443 for the domain, plain :8080 inside
    adapted = subprocess.run([tool("caddy"), "adapt", "--adapter", "caddyfile", "--config",
                              str(ROOT / "configs" / "caddy" / "Caddyfile")], capture_output=True, text=True,
                             env={**os.environ, **edge["environment"]})
    assert adapted.returncode == 0, adapted.stderr
    issuers = json.loads(adapted.stdout)["apps"]["tls"]["automation"]["policies"][0]["issuers"]
    assert issuers[0]["email"] == "ops@example.com"
    listens = {a for srv in json.loads(adapted.stdout)["apps"]["http"]["servers"].values() for a in srv["listen"]}
    assert {"0.0.0.0:443", "0.0.0.0:8080"} <= listens
    # deploy-all picks the TLS file when GATEWAY_DOMAIN is set, and binds the plain port to loopback
    out = subprocess.run(["./deploy-all.sh", "docker", "2", "--dry-run", "--cpu"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "DEPLOY_RUN_DIR": str(tmp_path),
                                                     "GATEWAY_DOMAIN": "api.example.com"})
    assert out.returncode == 0, out.stderr
    assert "compose files: docker-compose.yml, docker-compose.tls.yml" in out.stderr
    assert "+ set GATEWAY_BIND in .env" in out.stdout


def test_images_are_pinned_and_secrets_have_no_defaults(compose):
    text = COMPOSE.read_text()
    assert ":latest" not in text and "version:" not in text.split("services:")[0]
    for name, svc in compose["services"].items():
        image = svc.get("image", "")
        assert re.search(r":\$\{[A-Z0-9_]+:-[\w.-]+\}$|:local\}$|:[\w.-]+$", image), f"{name}: {image}"
    for secret in SECRETS:
        uses = re.findall(rf"\$\{{{secret}(:[-?][^}}]*)?\}}", text)
        assert uses and all(u.startswith(":?") for u in uses), f"{secret} must be required, never defaulted"
    assert "admin/admin" not in text and "GF_SECURITY_ADMIN_PASSWORD: admin" not in text


def test_long_running_services_have_healthchecks_restart_and_log_rotation(compose):
    for name, svc in compose["services"].items():
        assert svc.get("logging"), name
        if svc.get("restart") == "no":
            continue  # one-shot jobs
        assert svc.get("restart") == "unless-stopped", name
        assert svc.get("mem_limit"), name
        if name != "api-gateway":  # the gateway's healthcheck is in its Dockerfile
            assert svc.get("healthcheck"), name  # merged from the x-ollama anchor for the ollama services


def test_dockerfile_passes_hadolint():
    out = subprocess.run([tool("hadolint"), "gateway/Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    text = (ROOT / "gateway" / "Dockerfile").read_text()
    assert "HEALTHCHECK" in text and re.search(r"^USER 10001", text, re.M)
    assert 'CMD ["gunicorn", "-c", "gateway/gunicorn.conf.py", "gateway:create_app()"]' in text


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_pass_shellcheck(script):
    out = subprocess.run([tool("shellcheck"), "-x", str(script)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    text = script.read_text()
    if "# shellcheck shell=bash" not in text:  # sourced libraries (lib.sh, tw-helper.sh) are not run
        # POSIX sh scripts run inside containers whose sh may lack pipefail (Redis' and n8n's images)
        strict = "set -eu" if text.startswith("#!/bin/sh") else "set -euo pipefail"
        assert strict in text and os.access(script, os.X_OK)


def test_install_dry_run_changes_nothing(tmp_path):
    before = sorted(p.name for p in ROOT.iterdir())
    out = subprocess.run(["./install.sh", "--dry-run", "--yes", "--no-docker"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "+ " in out.stdout and "apt-get install" in out.stdout and "would" in out.stdout
    install = next(line for line in out.stdout.splitlines() if "apt-get install" in line)
    assert " redis-server " in install and install.endswith(" caddy")  # local mode's Redis and edge
    assert sorted(p.name for p in ROOT.iterdir()) == before


def test_env_generation_is_idempotent_and_private(tmp_path):
    shutil.copy(ROOT / ".env.example", tmp_path / ".env.example")
    cmd = [__import__("sys").executable, str(ROOT / "scripts" / "init_env.py")]
    first = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=True)
    env1 = (tmp_path / ".env").read_text()
    values = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", env1, re.M))
    for secret in SECRETS:
        assert len(values[secret]) >= 20, secret
        assert values[secret] not in first.stdout  # names only, never values
    # apps get a plain key; n8n (its cost monitor reads every key's spend) and operators get admin keys
    assert values["N8N_GATEWAY_API_KEY"] in values["GATEWAY_ADMIN_KEYS"].split(",")
    assert len(values["GATEWAY_ADMIN_KEYS"].split(",")) == 2
    assert not set(values["GATEWAY_API_KEYS"].split(",")) & set(values["GATEWAY_ADMIN_KEYS"].split(","))
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    second = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=True)
    assert (tmp_path / ".env").read_text() == env1 and "nothing changed" in second.stdout
    # a user's own value survives, an emptied one is regenerated
    text = env1.replace(f"QDRANT_API_KEY={values['QDRANT_API_KEY']}", "QDRANT_API_KEY=")
    text = text.replace(f"REDIS_PASSWORD={values['REDIS_PASSWORD']}", "REDIS_PASSWORD=mine")
    (tmp_path / ".env").write_text(text)
    subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=True)
    third = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", (tmp_path / ".env").read_text(), re.M))
    assert third["REDIS_PASSWORD"] == "mine" and len(third["QDRANT_API_KEY"]) >= 20


@pytest.mark.parametrize(("args", "expected"), [
    (["docker", "3", "--dry-run", "--cpu"], ["docker compose --profile cpu up -d --build", "tier 3",
                                            "tinyllama phi mistral"]),
    (["docker", "1", "--dry-run", "--gpu"], ["docker compose --profile gpu up -d --build", "models: tinyllama"]),
    (["down", "--dry-run"], ["docker compose down"]),
    (["down", "--volumes", "--yes", "--dry-run"], ["docker compose down --volumes"]),
    (["logs", "grafana", "--dry-run"], ["docker compose logs -f --tail=100 grafana"]),
    (["status", "--dry-run"], ["docker compose ps --format"]),
    (["backup", "--dry-run"], ["redis-cli --no-auth-warning --rdb /data/backup.rdb", "pg_dump -U n8n -d n8n",
                               "tar -C /var/lib/grafana --exclude=./dashboards -cf -", "tar -C /qdrant/storage"]),
    (["update", "2", "--dry-run"], ["pg_dump", "docker compose --profile cpu pull",
                                    "docker compose --profile cpu up -d --build --remove-orphans"]),
])
def test_deploy_docker_dry_run_prints_the_compose_commands(args, expected, tmp_path):
    out = subprocess.run(["./deploy-all.sh", *args], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "DEPLOY_RUN_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    for fragment in expected:
        assert fragment in out.stdout + out.stderr


@pytest.mark.parametrize("tier", [1, 2, 3, 4])
def test_deploy_docker_dry_run_shows_the_tiers_limits_and_models(tier, tmp_path):
    """configs/tiers.yaml sizes every container and Redis per tier (tier 3's Ollama holds Mistral-7B)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import tiers

    want = tiers.compose_env(tiers.load(tier))
    env = {k: v for k, v in os.environ.items() if k not in want}
    out = subprocess.run(["./deploy-all.sh", "docker", str(tier), "--dry-run", "--cpu"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, env={**env, "DEPLOY_RUN_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert f"ollama {want['OLLAMA_MEM_LIMIT']} " in text and f"gateway {want['GATEWAY_MEM_LIMIT']}," in text
    assert f"maxmemory {want['REDIS_MAXMEMORY']}" in text and f"models: {want['OLLAMA_MODELS_TO_PULL']}" in text
    if tier == 3:
        assert "mistral" in want["OLLAMA_MODELS_TO_PULL"] and tiers.to_bytes(want["OLLAMA_MEM_LIMIT"]) >= 6 * 2**30
    # a value set in .env (or the environment) wins over the tier's
    out = subprocess.run(["./deploy-all.sh", "docker", str(tier), "--dry-run", "--cpu"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60,
                         env={**env, "DEPLOY_RUN_DIR": str(tmp_path), "OLLAMA_MEM_LIMIT": "9g"})
    assert "ollama 9g " in out.stdout + out.stderr


def test_the_gpu_tier_uses_the_gpu_profile_and_gives_the_gateway_nvml(tmp_path):
    out = subprocess.run(["./deploy-all.sh", "docker", "4", "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "DEPLOY_RUN_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert "docker compose --profile gpu up -d --build" in out.stdout and "set COMPOSE_FILE in .env" in out.stdout
    compose = subprocess.run([tool("docker-compose"), "--env-file", str(ROOT / ".env.example"), "-f", str(COMPOSE),
                              "-f", str(ROOT / "docker-compose.gpu.yml"), "--profile", "gpu", "config", "--format",
                              "json"], cwd=ROOT, capture_output=True, text=True, env=compose_env(), timeout=60)
    assert compose.returncode == 0, compose.stderr
    gateway = json.loads(compose.stdout)["services"]["api-gateway"]
    [device] = gateway["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["utility"] and device["driver"] == "nvidia"


def test_the_gpu_tier_without_a_gpu_fails_loudly_unless_asked_for_the_cpu(tmp_path):
    env = {**os.environ, "DEPLOY_RUN_DIR": str(tmp_path), "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    (tmp_path / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")
    (tmp_path / "nvidia-smi").chmod(0o755)
    doctor = subprocess.run([sys.executable, "scripts/doctor.py", "--tier", "4"], cwd=ROOT, capture_output=True,
                            text=True, env={**env, "DOCTOR_MEM_GB": "16", "DOCTOR_FREE_DISK_GB": "100"})
    assert "[FAIL] tier 4 is the GPU tier and nvidia-smi finds no NVIDIA GPU" in doctor.stdout
    doctor = subprocess.run([sys.executable, "scripts/doctor.py", "--tier", "4", "--cpu"], cwd=ROOT,
                            capture_output=True, text=True, env={**env, "DOCTOR_MEM_GB": "16"})
    assert "[warn] tier 4 is the GPU tier" in doctor.stdout


def test_deploy_rejects_bad_tier():
    out = subprocess.run(["./deploy-all.sh", "docker", "7", "--dry-run"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and "tier must be 1, 2, 3 or 4" in out.stderr


def test_down_volumes_asks_before_deleting_data():
    out = subprocess.run(["./deploy-all.sh", "down", "--volumes"], cwd=ROOT, input="no\n", capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0 and "nothing deleted" in out.stderr and "deletes ALL data" in out.stderr


def test_external_ollama_path_uses_no_ollama_container(ollama, tmp_path):
    out = subprocess.run(["./deploy-all.sh", "docker", "2", "--external-ollama", ollama.url, "--pull", "--dry-run"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "DEPLOY_RUN_DIR": str(tmp_path)})
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert f"Ollama 0.12.11 at {ollama.url}" in text and "no Ollama container" in text
    assert "+ docker compose up -d --build" in text and "--profile" not in text.split("no Ollama container")[1]
    assert "ollama_tools.py pull" in text and "tinyllama phi" in text


def test_external_ollama_unreachable_is_a_clear_error(unused_port, tmp_path):
    out = subprocess.run(["./deploy-all.sh", "docker", "--external-ollama", f"http://127.0.0.1:{unused_port}",
                          "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "DEPLOY_RUN_DIR": str(tmp_path)})
    assert out.returncode != 0 and "no Ollama answers" in out.stderr and "OLLAMA_HOST=0.0.0.0" in out.stderr


def test_pull_onto_each_of_several_hosts(ollama):
    from tests.fakes import FakeOllama

    other = FakeOllama(installed=(), loaded=())
    try:
        ollama.installed = {"tinyllama"}
        cmd = [sys.executable, "scripts/ollama_tools.py", "pull", f"{ollama.url},{other.url}", "phi"]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.count("phi: success") == 2
        assert "phi" in ollama.installed and other.installed == {"phi"}
    finally:
        other.close()


def test_pull_into_an_external_ollama(ollama):
    ollama.installed = {"tinyllama"}
    cmd = [sys.executable, "scripts/ollama_tools.py", "pull", ollama.url, "phi", "mistral"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "phi: success" in out.stdout
    assert {"phi", "mistral"} <= ollama.installed


def test_gpu_truth_is_loud_when_the_model_runs_on_the_cpu(ollama):
    cmd = [sys.executable, "scripts/ollama_tools.py", "gpu-truth", "--url", ollama.url]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "runs on the CPU" in out.stdout and "WARNING" in out.stderr
    ollama.vram = 900_000_000
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "tinyllama:latest: runs on the GPU" in out.stdout


def test_ollama_ps_processor_column_is_parsed():
    import importlib.util

    spec = importlib.util.spec_from_file_location("ollama_tools", ROOT / "scripts" / "ollama_tools.py")
    tools = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools)
    ps = ("NAME              ID              SIZE      PROCESSOR          UNTIL\n"
          "mistral:latest    f974a74358d6    5.9 GB    100% GPU           4 minutes from now\n"
          "phi:latest        e2fd6321a5fe    3.0 GB    48%/52% CPU/GPU    4 minutes from now\n"
          "tinyllama:latest  2644915ede35    1.0 GB    100% CPU           4 minutes from now\n")
    assert tools.processor_lines(ps) == [("mistral:latest", "100% GPU"), ("phi:latest", "48%/52% CPU/GPU"),
                                         ("tinyllama:latest", "100% CPU")]


def test_every_setting_reaches_the_gateway_and_no_other_services_secret(tmp_path):
    """env_file: every variable the gateway reads arrives with the value .env gives it (Compose's parsing:
    quotes, comments), what differs in the container is overridden, other services' secrets stay out."""
    source = (ROOT / "gateway" / "config.py").read_text() + (ROOT / "gateway" / "gunicorn.conf.py").read_text()
    read = set(re.findall(r'r\.\w+\("([A-Z_]+)"', source)) | set(re.findall(r'environ\.get\("([A-Z_]+)"', source))
    example = (ROOT / ".env.example").read_text()
    for name, value in SECRETS.items():
        example = re.sub(rf"^{name}=.*$", f"{name}={value}", example, flags=re.M)
    example = re.sub(r"^ANTHROPIC_API_KEY=.*$", 'ANTHROPIC_API_KEY="sk-ant-abc" # my key', example, flags=re.M)
    example = re.sub(r"^RATE_LIMIT_RPM=.*$", "RATE_LIMIT_RPM=42", example, flags=re.M)
    (tmp_path / ".env").write_text(example)
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    out = subprocess.run([tool("docker-compose"), "config", "--format", "json"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env={k: v for k, v in os.environ.items() if k not in read})
    assert out.returncode == 0, out.stderr
    env = json.loads(out.stdout)["services"]["api-gateway"]["environment"]
    assert read <= set(env), f"never reach the gateway: {sorted(read - set(env))}"
    assert env["ANTHROPIC_API_KEY"] == "sk-ant-abc" and env["RATE_LIMIT_RPM"] == "42"
    assert env["GATEWAY_HOST"] == "0.0.0.0" and env["GATEWAY_PORT"] == "8080"
    assert env["REDIS_URL"] == "redis://redis:6379/0" and env["METRICS_TOKEN"] == "m"
    for foreign in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "N8N_ENCRYPTION_KEY", "QDRANT_API_KEY"):
        assert env[foreign] == "", foreign


def _local_dry_run(tmp_path, **env):
    out = subprocess.run(["./deploy-all.sh", "local", "2", "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "DEPLOY_RUN_DIR": str(tmp_path), "REDIS_URL": "",
                                          "REDIS_PASSWORD": "sekrit-redis-pw", **env})
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def test_local_mode_answers_this_machine_alone_unless_told(tmp_path):
    out = _local_dry_run(tmp_path)
    assert re.search(r"EDGE_BIND=127\.0\.0\.1 ", out) and "sekrit-redis-pw" not in out  # no password shown
    assert "redis-server " + str(tmp_path / "redis.conf") in out  # it is read from a private file
    assert "tw_log_deploy" not in out  # nothing written to your Taskwarrior unasked
    out = _local_dry_run(tmp_path, LOCAL_BIND="0.0.0.0", TASKWARRIOR_LOG_DEPLOYS="true")
    assert re.search(r"EDGE_BIND=0\.0\.0\.0 ", out) and "+ tw_log_deploy local 2" in out


def test_run_sh_help_explains_and_starts_nothing():
    out = subprocess.run(["./scripts/run.sh", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and "Usage: ./scripts/run.sh" in out.stdout and "loading .env" not in out.stderr
    bad = subprocess.run(["./scripts/run.sh", "--port", "9"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "Usage" in bad.stderr
