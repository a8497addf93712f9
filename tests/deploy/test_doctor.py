"""./deploy-all.sh doctor: each problem simulated at its boundary gives its own message and the exit code."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import tiers
from tests.conftest import ROOT, free_port

GOOD_ENV = "\n".join(f"{k}=generated-{k.lower()}-0123456789abcdef" for k in (
    "GATEWAY_API_KEYS", "GATEWAY_ADMIN_KEYS", "METRICS_TOKEN", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
    "POSTGRES_PASSWORD", "N8N_ENCRYPTION_KEY", "QDRANT_API_KEY", "ALERTMANAGER_WEBHOOK_TOKEN")) + \
    "\nANTHROPIC_API_KEY=sk-ant-test\n"


def fake_docker(bindir, compose="2.29.1", engine=True, runtimes='{"runc":{}}'):
    script = bindir / "docker"
    script.write_text(f"""#!/bin/sh
case "$1 $2" in
  "compose version") echo "v{compose}"; exit 0 ;;
esac
if [ "$1" = info ]; then
  {"" if engine else 'echo "Cannot connect to the Docker daemon" >&2; exit 1'}
  case "$*" in
    *Runtimes*) echo '{runtimes}' ;;
    *DockerRootDir*) echo /var/lib/docker ;;
    *) echo 27.3.1 ;;
  esac
  exit 0
fi
exit 1
""")
    script.chmod(0o755)


@pytest.fixture
def doctor(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env_file = tmp_path / ".env"
    env_file.write_text(GOOD_ENV)
    ports = {var: str(free_port()) for var in ("GATEWAY_PORT", "GRAFANA_PORT", "N8N_PORT", "PROMETHEUS_PORT")}

    def run(*args, env=None, docker=None):
        fake_docker(bindir, **(docker or {}))
        base = {k: v for k, v in os.environ.items() if not k.endswith("_PORT")}
        full = {**base, "PATH": f"{bindir}:{os.environ['PATH']}", "DOCTOR_FREE_DISK_GB": "100",
                "DOCTOR_MEM_GB": "16", **ports, **(env or {})}
        return subprocess.run([sys.executable, str(ROOT / "scripts" / "doctor.py"), "--env-file", str(env_file),
                               "--tier", "2", *args], capture_output=True, text=True, env=full, timeout=60)

    run.env_file = env_file
    run.ports = ports
    return run


def test_a_healthy_machine_passes(doctor):
    out = doctor()
    assert out.returncode == 0, out.stdout
    assert "0 problem(s) block" in out.stdout and "Docker Compose 2.29.1" in out.stdout


@pytest.mark.parametrize(("setup", "message", "fix"), [
    ({"docker": {"compose": "2.20.2"}}, "Docker Compose 2.20.2 is older than 2.24", "docker-compose-plugin"),
    ({"docker": {"engine": False}}, "the Docker engine is not reachable", "systemctl start docker"),
    ({"env": {"DOCTOR_FREE_DISK_GB": "1.5"}}, "1.5 GB free on the disk", "docker system prune"),
    ({"env": {"DOCTOR_MEM_GB": "2"}}, "2.0 GiB of memory; tier 2 is sized for 4 GiB", "./deploy-all.sh docker 1"),
])
def test_each_blocking_problem_has_its_message_and_fix(doctor, setup, message, fix):
    out = doctor(**setup)
    assert out.returncode == 1
    assert message in out.stdout and fix in out.stdout


@pytest.mark.parametrize(("env", "level", "message"), [
    ({}, "ok", "learning router: feedback kept 48 h; shadow labels off (CALIBRATION_RATE=0, CALIBRATION_BUDGET_USD=0)"),
    ({"CALIBRATION_RATE": "0.05", "CALIBRATION_BUDGET_USD": "20"}, "ok",
     "shadow labels for 5.0% of answers within $20 a month"),
    ({"CALIBRATION_RATE": "0.05"}, "warn", "CALIBRATION_RATE=0.05 but CALIBRATION_BUDGET_USD=0"),
    ({"CALIBRATION_RATE": "5"}, "FAIL", "CALIBRATION_RATE must be 0..1"),
    ({"FEEDBACK_TTL_SECONDS": "0"}, "ok", "learning router: feedback off"),
])
def test_doctor_shows_the_learning_routers_settings(doctor, env, level, message):
    doctor.env_file.write_text(GOOD_ENV + "".join(f"{k}={v}\n" for k, v in env.items()))
    out = doctor()
    line = next(li for li in out.stdout.splitlines() if "learning router" in li or "CALIBRATION_RATE must" in li)
    assert line.startswith(f"[{level}") and message in line, out.stdout
    assert out.returncode == (1 if level == "FAIL" else 0)


def test_a_busy_port_names_its_variable(doctor):
    port = int(doctor.ports["GRAFANA_PORT"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        out = doctor()
    assert out.returncode == 1
    assert f"port {port} is in use" in out.stdout and "set GRAFANA_PORT to a free port" in out.stdout


@pytest.mark.parametrize(("env_text", "message"), [
    (GOOD_ENV.replace("REDIS_PASSWORD=generated-redis_password-0123456789abcdef", "REDIS_PASSWORD="),
     "REDIS_PASSWORD is empty"),
    (GOOD_ENV.replace("generated-grafana_admin_password-0123456789abcdef", "admin"),
     "GRAFANA_ADMIN_PASSWORD in .env is an example value"),
    (GOOD_ENV + "REDIS_PASSWORD=again\n", "sets REDIS_PASSWORD more than once"),
])
def test_env_problems(doctor, env_text, message):
    doctor.env_file.write_text(env_text)
    out = doctor()
    assert out.returncode == 1 and message in out.stdout


def test_missing_env_blocks_docker_but_only_warns_for_local(doctor, ollama):
    doctor.env_file.unlink()
    assert doctor().returncode == 1
    local = doctor("--mode", "local", env={"OLLAMA_URL": ollama.url, "REDIS_URL": ""})
    assert local.returncode == 0 and ".env is missing" in local.stdout


def test_local_mode_checks_what_local_mode_needs(doctor, ollama, unused_port):
    """No Docker finding at all; your Ollama must answer and should have the tier's models; Redis must answer
    where REDIS_URL names one."""
    ollama.installed.add("nomic-embed-text")
    good = doctor("--mode", "local", env={"OLLAMA_URL": ollama.url, "REDIS_URL": ""}, docker={"engine": False})
    assert good.returncode == 0, good.stdout
    assert "Docker" not in good.stdout and "has tier 2's models (tinyllama, phi, nomic-embed-text)" in good.stdout
    ollama.installed = {"tinyllama"}
    missing = doctor("--mode", "local", env={"OLLAMA_URL": ollama.url, "REDIS_URL": ""})
    assert missing.returncode == 0 and "[warn]" in missing.stdout and "fix: ollama pull phi" in missing.stdout
    dead = f"http://127.0.0.1:{unused_port}"
    down = doctor("--mode", "local", env={"OLLAMA_URL": dead, "REDIS_URL": ""})
    assert down.returncode == 1 and f"[FAIL] Ollama does not answer at {dead}" in down.stdout
    assert "ollama serve" in down.stdout
    redis = doctor("--mode", "local", env={"OLLAMA_URL": ollama.url, "REDIS_URL": f"redis://127.0.0.1:{unused_port}/0"})
    assert redis.returncode == 1 and "REDIS_URL names 127.0.0.1" in redis.stdout


def test_local_mode_says_what_the_local_models_can_do_beyond_text(doctor, ollama):
    """classic: no local tool caller at tier 2 (agent traffic goes to Claude), with the fix; tools: the preset's
    models, pulled, and what Ollama reports they can do; a model that does not do what the preset says: warn."""
    ollama.installed.add("nomic-embed-text")
    classic = doctor("--mode", "local", env={"OLLAMA_URL": ollama.url, "REDIS_URL": ""})
    assert "model preset classic: no local model calls tools" in classic.stdout
    assert "fix: MODEL_PRESET=tools in .env" in classic.stdout
    env = {"OLLAMA_URL": ollama.url, "REDIS_URL": "", "MODEL_PRESET": "tools"}
    pull = doctor("--mode", "local", env=env)
    assert "fix: ollama pull qwen3:0.6b; ollama pull qwen3-vl:2b" in pull.stdout
    ollama.installed |= {"qwen3:0.6b", "qwen3-vl:2b"}
    tools = doctor("--mode", "local", env=env)
    assert tools.returncode == 0 and "has tier 2's models (qwen3:0.6b, qwen3-vl:2b, nomic-embed-text)" in tools.stdout
    assert "model preset tools: tools by qwen3-small, qwen3-vl-small; images by qwen3-vl-small" in tools.stdout
    ollama.capabilities["qwen3-vl"] = ["completion", "tools"]  # an old build without the vision projector
    stale = doctor("--mode", "local", env=env)
    assert "[warn] qwen3-vl-small is configured to vision but Ollama says it cannot" in stale.stdout


def test_the_preset_decides_which_models_each_tier_pulls():
    def pulled(tier: int, preset: str) -> list[str]:
        out = subprocess.run([sys.executable, "scripts/tiers.py", "models", str(tier)], cwd=ROOT, text=True,
                             capture_output=True, env={**os.environ, "MODEL_PRESET": preset}, check=True)
        return out.stdout.split()

    embed = "nomic-embed-text"  # the embedding model, at every tier
    assert pulled(2, "classic") == ["tinyllama", "phi", embed]
    assert pulled(1, "tools") == ["qwen3:0.6b", embed]
    assert pulled(3, "tools") == ["qwen3:0.6b", "qwen3-vl:2b", "qwen3-vl:8b", embed]
    # chosen by size: every preset model fits in its deployment tier's Ollama memory limit (configs/tiers.yaml)
    for number in (1, 2, 3, 4):
        tier = tiers.load(number, preset="tools")
        assert max(float(m["ram_gb"]) for m in tier.models) <= tier.limit_gib("ollama"), number


def test_deploy_all_doctor_local_runs_the_local_checks(tmp_path, unused_port):
    env = {**os.environ, "DEPLOY_RUN_DIR": str(tmp_path), "OLLAMA_URL": f"http://127.0.0.1:{unused_port}"}
    out = subprocess.run(["./deploy-all.sh", "doctor", "2", "--local"], cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 1 and "Ollama does not answer" in out.stdout and "Docker" not in out.stdout


def test_gpu_without_container_runtime_blocks(doctor, tmp_path):
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.write_text('#!/bin/sh\ncase "$*" in *memory.total*) echo 2048 ;; '
                   "*) echo 'GPU 0: NVIDIA T4 (UUID: GPU-1)' ;; esac\n")
    smi.chmod(0o755)
    out = doctor()
    assert out.returncode == 1 and "Docker cannot use it" in out.stdout and "nvidia-container-toolkit" in out.stdout
    ok = doctor(docker={"runtimes": '{"nvidia":{},"runc":{}}'})
    assert ok.returncode == 0 and "the GPU has 2.0 GB; tier 2's largest model needs 2.5 GB" in ok.stdout


def test_missing_anthropic_key_only_warns(doctor):
    doctor.env_file.write_text(GOOD_ENV.replace("ANTHROPIC_API_KEY=sk-ant-test", "ANTHROPIC_API_KEY="))
    out = doctor()
    assert out.returncode == 0 and "[warn] ANTHROPIC_API_KEY is empty" in out.stdout


def test_deploy_all_doctor_runs_the_checks(tmp_path):
    env = {**os.environ, "DOCTOR_FREE_DISK_GB": "0.1", "DEPLOY_RUN_DIR": str(tmp_path)}
    out = subprocess.run(["./deploy-all.sh", "doctor", "2"], cwd=ROOT, capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 1 and "0.1 GB free on the disk" in out.stdout


# ----------------------------------------------------------------------- tier 1 fits its machine


@pytest.mark.parametrize(("tier", "visible_kb", "level"), [
    (1, 1_983_000, "ok"),      # a t3.small / e2-small: 2 GiB sold, about 1.89 GiB visible
    (1, 1_750_000, "warn"),    # tight
    (1, 1_500_000, "FAIL"),    # the wrong machine
    (2, 3_950_000, "ok"),      # a t3.medium
    (3, 3_950_000, "FAIL"),    # Mistral-7B's tier on a 4 GiB machine
])
def test_each_tier_starts_on_the_machine_it_is_sized_for(doctor, tmp_path, tier, visible_kb, level):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal:       {visible_kb} kB\nMemFree:          100000 kB\n")
    out = doctor("--tier", str(tier), env={"DOCTOR_MEM_GB": "", "DOCTOR_MEMINFO": str(meminfo)})
    line = next(x for x in out.stdout.splitlines() if "memory" in x and x.startswith("["))
    assert line.startswith(f"[{level}"), out.stdout
    assert f"{visible_kb * 1024 / 2**30:.1f} GiB" in line
    assert out.returncode == (1 if level == "FAIL" else 0), out.stdout


# ----------------------------------------------------------------------- the real readings


def test_disk_reading_is_the_real_free_space_in_gb(doctor, tmp_path):
    """No override: doctor reads a real filesystem. A tmpfs of known size where the machine lets us mount one,
    else the test's own folder, measured independently with df."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3000m", "tmpfs", str(mount)],
                             capture_output=True).returncode == 0
    try:
        df = subprocess.run(["df", "-B1", "--output=avail", str(mount)], capture_output=True, text=True, check=True)
        free_gb = int(df.stdout.split()[-1]) / 1e9
        out = doctor("--tier", "1", env={"DOCTOR_FREE_DISK_GB": "", "DOCTOR_DISK_PATH": str(mount)})
        line = next(x for x in out.stdout.splitlines() if "GB free on" in x)
        assert f"{free_gb:.1f} GB free on {mount}" in line, line
        if mounted:  # 3000 MiB = 3.1 GB: less than tier 1's model and images need
            assert line.startswith("[FAIL] 3.1 GB free") and out.returncode == 1
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)], check=True)


def test_memory_reading_is_the_real_meminfo_in_gib(doctor):
    text = Path("/proc/meminfo").read_text()
    kb = int(re.search(r"MemTotal:\s+(\d+) kB", text).group(1))
    out = doctor("--tier", "1", env={"DOCTOR_MEM_GB": ""})
    assert f"{kb * 1024 / 2**30:.1f} GiB" in out.stdout
