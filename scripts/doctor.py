#!/usr/bin/env python3
"""Check a machine before the stack starts: one line per problem, with the command or setting that fixes it.

    python3 scripts/doctor.py [--tier N] [--mode docker|local] [--env-file .env] [--quiet]

Exit status 0 when nothing blocks (warnings do not block), 1 otherwise. ./deploy-all.sh doctor runs it,
and docker/local run it quietly first. The machine is checked against its tier in configs/tiers.yaml. Its
readings come from the machine itself: the free space where Docker keeps images (DOCTOR_DISK_PATH to look
elsewhere) and /proc/meminfo (DOCTOR_MEMINFO for another file); DOCTOR_FREE_DISK_GB and DOCTOR_MEM_GB
replace them for odd machines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tiers import Tier, load

ROOT = Path(__file__).resolve().parent.parent
MIN_COMPOSE = (2, 24)
GB = 1e9              # disk sizes are decimal gigabytes, as disks are sold and `df -H` shows them
GIB = 2**30           # memory in GiB, as VMs are sold
STACK_DISK_GB = 4.0   # images of the stack's services
SECRETS = ("GATEWAY_API_KEYS", "GATEWAY_ADMIN_KEYS", "METRICS_TOKEN", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD",
           "POSTGRES_PASSWORD", "N8N_ENCRYPTION_KEY", "QDRANT_API_KEY", "ALERTMANAGER_WEBHOOK_TOKEN")
EXAMPLE_VALUES = {"changeme", "change-me", "admin", "password", "secret", "example", "your-key-here",
                  "sk-ant-your-key-here", "xxx", "todo"}
PORTS = (("GATEWAY_PORT", 8080), ("GRAFANA_PORT", 3000), ("N8N_PORT", 5678), ("PROMETHEUS_PORT", 9090))


@dataclass
class Finding:
    level: str   # ok | warn | fail
    what: str
    fix: str = ""


def run(cmd: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None


def check_docker() -> list[Finding]:
    if not shutil.which("docker"):
        return [Finding("fail", "Docker is not installed",
                        "./install.sh (or https://docs.docker.com/engine/install/); without Docker, "
                        "./deploy-all.sh local runs the gateway natively (./deploy-all.sh doctor --local checks it)")]
    info = run(["docker", "info", "--format", "{{.ServerVersion}}"])
    if info is None or info.returncode != 0:
        denied = info is not None and "permission denied" in (info.stderr or "").lower()
        fix = ("sudo usermod -aG docker $USER, then log in again" if denied
               else "sudo systemctl start docker (and: sudo systemctl enable docker)")
        return [Finding("fail", "the Docker engine is not reachable" + (" without sudo" if denied else ""), fix)]
    out = [Finding("ok", f"Docker engine {info.stdout.strip()}")]
    compose = run(["docker", "compose", "version", "--short"])
    version = compose.stdout.strip().lstrip("v") if compose and compose.returncode == 0 else ""
    m = re.match(r"(\d+)\.(\d+)", version)
    if not m:
        out.append(Finding("fail", "the Docker Compose plugin is missing",
                           "sudo apt-get install docker-compose-plugin (Docker's apt repository)"))
    elif (int(m.group(1)), int(m.group(2))) < MIN_COMPOSE:
        out.append(Finding("fail", f"Docker Compose {version} is older than {MIN_COMPOSE[0]}.{MIN_COMPOSE[1]}, "
                           "which docker-compose.yml needs",
                           "sudo apt-get install --only-upgrade docker-compose-plugin"))
    else:
        out.append(Finding("ok", f"Docker Compose {version}"))
    return out


def check_disk(tier: Tier) -> list[Finding]:
    need = sum(float(m.get("disk_gb", 0)) for m in tier.models) + STACK_DISK_GB
    override = os.environ.get("DOCTOR_FREE_DISK_GB")
    if override:
        free = float(override)
        where = "the disk"
    else:
        where = os.environ.get("DOCTOR_DISK_PATH") or docker_root() or str(ROOT)
        free = shutil.disk_usage(where if os.path.exists(where) else ROOT).free / GB
    if free < need:
        return [Finding("fail", f"{free:.1f} GB free on {where}; tier {tier.number} needs about {need:.1f} GB "
                        "(its models and the stack's images)",
                        "free space (docker system prune) or choose a lower tier: ./deploy-all.sh docker 1")]
    return [Finding("ok", f"disk: {free:.1f} GB free on {where}, tier {tier.number} needs about {need:.1f} GB")]


def docker_root() -> str | None:
    info = run(["docker", "info", "--format", "{{.DockerRootDir}}"]) if shutil.which("docker") else None
    return info.stdout.strip() if info and info.returncode == 0 and info.stdout.strip() else None


def memory_gib() -> float | None:
    override = os.environ.get("DOCTOR_MEM_GB")
    if override:
        return float(override)
    meminfo = Path(os.environ.get("DOCTOR_MEMINFO") or "/proc/meminfo")
    m = re.search(r"MemTotal:\s+(\d+) kB", meminfo.read_text()) if meminfo.exists() else None
    return int(m.group(1)) * 1024 / GIB if m else None


def check_memory(tier: Tier) -> list[Finding]:
    """Against the tier's machine size: a VM shows the system a little less than it is sold with (a 2 GiB
    VM about 1.9 GiB), so below 90 % is tight (a warning) and below 80 % it is the wrong machine."""
    total = memory_gib()
    if total is None:
        return [Finding("warn", "cannot read the machine's memory size", "check it has enough for the tier's models")]
    largest = max((float(m.get("ram_gb", 0)) for m in tier.models), default=0.0)
    if total < 0.8 * tier.memory_gib or total < largest + 0.5:
        lower = f"./deploy-all.sh docker {tier.number - 1}" if tier.number > 1 else "a bigger machine"
        return [Finding("fail", f"{total:.1f} GiB of memory; tier {tier.number} is sized for {tier.memory_gib:g} GiB "
                        f"({tier.machine})", f"choose a lower tier ({lower}) or a bigger machine")]
    if total < 0.9 * tier.memory_gib:
        return [Finding("warn", f"{total:.1f} GiB of memory: tight for tier {tier.number}, sized for "
                        f"{tier.memory_gib:g} GiB", "fine at rest; under load Ollama may unload models or swap")]
    return [Finding("ok", f"memory: {total:.1f} GiB")]


def port_owner(port: int) -> str:
    out = run(["ss", "-Hltnp", f"sport = :{port}"]) if shutil.which("ss") else None
    m = re.search(r'users:\(\("([^"]+)"', out.stdout) if out and out.stdout else None
    return m.group(1) if m else "another process"


def check_ports(env: dict[str, str], only: tuple[str, ...] | None = None) -> list[Finding]:
    out = []
    for var, default in PORTS:
        if only and var not in only:
            continue
        port = int(env.get(var) or default)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                owner = port_owner(port)
                level = "warn" if owner in ("docker-proxy", "gunicorn", "caddy") else "fail"  # maybe the stack
                out.append(Finding(level, f"port {port} is in use by {owner}",
                                   f"stop {owner}, or set {var} to a free port in .env"))
                continue
        out.append(Finding("ok", f"port {port} free"))
    return out


def read_env(path: Path) -> tuple[dict[str, str], list[str]]:
    values, dupes = {}, []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            if m.group(1) in values:
                dupes.append(m.group(1))
            values[m.group(1)] = m.group(2).strip().strip('"').strip("'")
    return values, dupes


def check_edge() -> list[Finding]:
    """Local mode: Caddy in front of gunicorn, whose threads would otherwise read slow clients' requests."""
    if shutil.which("caddy"):
        return [Finding("ok", "caddy installed: the edge fronts the gateway (configs/caddy/Caddyfile)")]
    return [Finding("warn", "caddy is not installed: gunicorn faces clients itself, and a few hundred slow clients "
                            "can hold every one of its threads",
                    "apt-get install caddy (./install.sh installs it), then ./deploy-all.sh local again")]


def check_ollama(env: dict[str, str], tier: Tier) -> list[Finding]:
    """Local mode: your own Ollama answers at OLLAMA_URL and has the tier's models. Without it every prompt
    routed to a local model is refused (or, with PAID_FALLBACK=cloud, paid for): a deploy must not look fine."""
    url = (env.get("OLLAMA_URL") or "http://localhost:11434").rstrip("/")
    try:
        with urllib.request.urlopen(f"{url}/api/tags", timeout=3) as reply:
            listed = {m.get("name", "") for m in json.load(reply).get("models", [])}
    except (OSError, ValueError) as exc:
        return [Finding("fail", f"Ollama does not answer at {url} ({type(exc).__name__}): local models are "
                                "unavailable", "start it (ollama serve), or set OLLAMA_URL in .env to where it runs")]
    names = listed | {n.removesuffix(":latest") for n in listed}
    missing = [m for m in tier.model_ids if m not in names]
    if missing:
        return [Finding("warn", f"Ollama at {url} lacks tier {tier.number}'s model(s) {', '.join(missing)}: "
                                "requests for them fall back or are refused",
                        "; ".join(f"ollama pull {m}" for m in missing))]
    found = Finding("ok", f"Ollama at {url} has tier {tier.number}'s models ({', '.join(tier.model_ids)})")
    return [found, *check_capabilities(url, tier, env.get("MODEL_PRESET") or "classic")]


def check_capabilities(url: str, tier: Tier, preset: str) -> list[Finding]:
    """What the tier's local models can do beyond text, as Ollama reports it (/api/show): which requests with
    tools or images stay local, and a preset model that does not do what the preset promises."""
    able: dict[str, set[str]] = {"tools": set(), "vision": set()}
    for m in tier.models:
        try:
            request = urllib.request.Request(f"{url}/api/show", data=json.dumps({"model": m.get("id") or m["name"]})
                                             .encode(), headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=3) as reply:
                reported = set(json.load(reply).get("capabilities") or [])
        except (OSError, ValueError):
            continue
        for c in set(m.get("capabilities") or []) & {"tools", "vision"}:
            if c not in reported:
                return [Finding("warn", f"{m['name']} is configured to {c} but Ollama says it cannot",
                                f"ollama pull {m.get('id') or m['name']} (a newer version), or pick another model")]
        for c in able:
            if c in reported:
                able[c].add(m["name"])
    if not able["tools"]:
        return [Finding("warn", f"model preset {preset}: no local model calls tools or reads images, so agent and "
                                "tool requests go to Claude (or are refused without it)",
                        "MODEL_PRESET=tools in .env, then ./deploy-all.sh local (pulls qwen3 / qwen3-vl)")]
    return [Finding("ok", f"model preset {preset}: tools by {', '.join(sorted(able['tools']))}; images by "
                          f"{', '.join(sorted(able['vision'])) or 'no local model'}")]


def check_redis(env: dict[str, str]) -> list[Finding]:
    """Local mode: the shared state's Redis (REDIS_URL, else the private redis-server deploy-all starts)."""
    if env.get("REDIS_URL"):
        parts = urllib.parse.urlsplit(env["REDIS_URL"])
        try:
            socket.create_connection((parts.hostname or "localhost", parts.port or 6379), timeout=3).close()
        except OSError:
            return [Finding("fail", f"REDIS_URL names {parts.hostname}:{parts.port or 6379}, which does not answer",
                            "start that Redis, or empty REDIS_URL to let ./deploy-all.sh local start its own")]
        return [Finding("ok", f"Redis answers at {parts.hostname}:{parts.port or 6379} (REDIS_URL)")]
    if shutil.which("redis-server"):
        return [Finding("ok", "redis-server installed: local mode starts a private one (shared state, 2 workers)")]
    return [Finding("warn", "redis-server is not installed: state is per process, so the gateway runs one worker",
                    "apt-get install redis-server (./install.sh --no-docker installs it)")]


def check_env(path: Path, required: bool) -> tuple[list[Finding], dict[str, str]]:
    if not path.exists():
        level = "fail" if required else "warn"
        return [Finding(level, f"{path.name} is missing", "./install.sh --env-only (generates the secrets)")], {}
    values, dupes = read_env(path)
    out = []
    if dupes:
        out.append(Finding("fail", f"{path.name} sets {', '.join(sorted(set(dupes)))} more than once",
                           f"keep one line for each in {path.name}"))
    for name in SECRETS:
        value = values.get(name, "")
        if not value:
            out.append(Finding("fail" if required else "warn", f"{name} is empty in {path.name}",
                               "./install.sh --env-only fills empty secrets"))
        elif value.lower() in EXAMPLE_VALUES or any(v.lower() in EXAMPLE_VALUES for v in value.split(",")):
            out.append(Finding("fail", f"{name} in {path.name} is an example value, not a secret",
                               "empty it and run ./install.sh --env-only to generate one"))
    if not values.get("ANTHROPIC_API_KEY"):
        out.append(Finding("warn", "ANTHROPIC_API_KEY is empty: every request stays on local models",
                           f"add your key to {path.name} to let complex prompts use Claude"))
    return out or [Finding("ok", f"{path.name}: secrets set")], values


def check_learning(env: dict[str, str]) -> list[Finding]:
    """The learning router's settings (docs/routing.md): what it will do, and what does not add up."""
    def number(name: str, default: float) -> float | None:
        try:
            return float(env.get(name) or default)
        except ValueError:
            return None

    rate, budget = number("CALIBRATION_RATE", 0), number("CALIBRATION_BUDGET_USD", 0)
    ttl = number("FEEDBACK_TTL_SECONDS", 172800)
    if rate is None or budget is None or ttl is None or not 0 <= rate <= 1 or budget < 0 or ttl < 0:
        return [Finding("fail", "CALIBRATION_RATE must be 0..1, CALIBRATION_BUDGET_USD and FEEDBACK_TTL_SECONDS "
                                f"numbers >= 0 (got {env.get('CALIBRATION_RATE')!r}, "
                                f"{env.get('CALIBRATION_BUDGET_USD')!r}, {env.get('FEEDBACK_TTL_SECONDS')!r})",
                        "fix them in .env")]
    feedback = f"feedback kept {ttl / 3600:g} h" if ttl else "feedback off"
    if not rate:
        return [Finding("ok", f"learning router: {feedback}; shadow labels off (CALIBRATION_RATE=0, "
                              f"CALIBRATION_BUDGET_USD={budget:g})")]
    if not budget:
        return [Finding("warn", f"learning router: {feedback}; CALIBRATION_RATE={rate:g} but CALIBRATION_BUDGET_USD=0: "
                                "only cloud answers get a (free, local) shadow; local answers get none",
                        "set CALIBRATION_BUDGET_USD to what shadow answers may cost a month")]
    return [Finding("ok", f"learning router: {feedback}; shadow labels for {rate:.1%} of answers within "
                          f"${budget:g} a month (CALIBRATION_RATE, CALIBRATION_BUDGET_USD)")]


def check_gpu(tier: Tier, cpu_ok: bool = False) -> list[Finding]:
    smi = run(["nvidia-smi", "-L"]) if shutil.which("nvidia-smi") else None
    if smi is None or smi.returncode != 0 or "GPU" not in smi.stdout:
        if Path("/dev/kfd").exists() or shutil.which("rocminfo"):
            return [Finding("warn", "an AMD GPU (ROCm) is present: the gpu profile targets NVIDIA, so Ollama "
                            "will run on the CPU", "use --cpu, or run Ollama natively with ROCm and --external-ollama")]
        if tier.gpu:
            return [Finding("warn" if cpu_ok else "fail",
                            f"tier {tier.number} is the GPU tier and nvidia-smi finds no NVIDIA GPU",
                            "install the NVIDIA driver (nvidia-smi must list the GPU), choose tier 3, or pass --cpu")]
        return [Finding("ok", "no NVIDIA GPU: the cpu profile will be used")]
    vram = run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"])
    largest = max((float(m.get("ram_gb", 0)) for m in tier.models), default=0.0)
    try:
        total_gb = max(float(x) for x in vram.stdout.split()) / 1024 if vram and vram.returncode == 0 else None
    except ValueError:
        total_gb = None
    out = []
    if total_gb is not None and total_gb < largest:
        out.append(Finding("warn", f"the GPU has {total_gb:.1f} GB; tier {tier.number}'s largest model needs "
                           f"{largest:.1f} GB",
                           "it will run partly on the CPU: choose a lower tier or a smaller model"))
    runtimes = run(["docker", "info", "--format", "{{json .Runtimes}}"])
    if runtimes is None or "nvidia" not in (runtimes.stdout or ""):
        return [*out, Finding("fail", "an NVIDIA GPU is present but Docker cannot use it (no NVIDIA container "
                              "runtime)", "install nvidia-container-toolkit, then: sudo nvidia-ctk runtime configure "
                              "--runtime=docker && sudo systemctl restart docker (or run with --cpu)")]
    return [*out, Finding("ok", f"GPU: {smi.stdout.splitlines()[0]}")]


def check_clock() -> list[Finding]:
    out = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"]) if shutil.which("timedatectl") else None
    if out is not None and out.returncode == 0 and out.stdout.strip() == "no":
        return [Finding("warn", "the clock is not synchronised (NTP): spend days and months, and TLS, need it",
                        "sudo timedatectl set-ntp true")]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", type=int, choices=(1, 2, 3, 4), default=int(os.environ.get("DEPLOYMENT_TIER", 2)))
    parser.add_argument("--mode", choices=("docker", "local"), default="docker")
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env")
    parser.add_argument("--quiet", action="store_true", help="print only problems")
    parser.add_argument("--cpu", action="store_true", help="the GPU tier on the CPU is wanted (deploy-all --cpu)")
    args = parser.parse_args()

    env_findings, values = check_env(args.env_file, required=args.mode == "docker")
    env = {**values, **os.environ}  # what the caller exported wins, as in deploy-all.sh
    # Local mode publishes only the gateway; docker mode also Grafana, n8n and Prometheus.
    findings = env_findings + check_ports(env, None if args.mode == "docker" else ("GATEWAY_PORT",))
    if args.mode == "local":
        findings = check_ollama(env, load(args.tier, preset=env.get("MODEL_PRESET"))) + check_redis(env) + findings \
            + check_edge()
    if args.mode == "docker":
        tier = load(args.tier, preset=env.get("MODEL_PRESET"))
        findings = check_docker() + check_disk(tier) + check_memory(tier) + check_gpu(tier, args.cpu) + findings
    findings += check_learning(env) + check_clock()
    marks = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
    for f in findings:
        if f.level == "ok" and args.quiet:
            continue
        print(f"[{marks[f.level]}] {f.what}" + (f"\n         fix: {f.fix}" if f.fix and f.level != "ok" else ""))
    failed = [f for f in findings if f.level == "fail"]
    if failed or not args.quiet:
        print(f"doctor: {len(failed)} problem(s) block, {sum(f.level == 'warn' for f in findings)} warning(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
