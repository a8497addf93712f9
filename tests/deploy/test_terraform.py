"""terraform/aws and terraform/gcp: fmt, validate and `terraform test` (mocked AWS provider) where a provider
exists here, the same invariants on the parsed HCL for GCP (no Google provider can be installed here),
checkov, the shared boot script rendered by Terraform for every tier and cloud and shellchecked, and
`deploy-all.sh aws|gcp --dry-run`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest

from tests.conftest import ROOT, cached_tool
from tests.deploy.test_stack import tool

TF = ROOT / "terraform"
TIERS = (1, 2, 3, 4)
ADMIN_PORTS = {"3000", "5678", "9090"}
terraform = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not on PATH (see PLATFORM.md)")


def tf_env(tmp_path: Path) -> dict[str, str]:
    # No CLI config file, no checkpoint calls, plugin cache in the test's own folder.
    rc = tmp_path / "terraformrc"
    rc.write_text("")
    return {**os.environ, "TF_CLI_CONFIG_FILE": str(rc), "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}


def run_tf(args: list[str], cwd: Path, env: dict, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["terraform", *args, "-no-color"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def parse(module: str) -> dict:
    opts = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
    merged: dict = {}
    for path in sorted((TF / module).glob("*.tf")):
        with path.open() as f:
            for key, blocks in hcl2.load(f, serialization_options=opts).items():
                merged.setdefault(key, []).extend(blocks)
    return merged


def resources(module: str, kind: str) -> dict:
    found = {}
    for block in parse(module).get("resource", []):
        for name, body in block.get(kind, {}).items():
            found[name] = body
    return found


def variables(module: str) -> dict:
    return {name: body for block in parse(module)["variable"] for name, body in block.items()}


def tier_map(module: str) -> dict:
    for block in parse(module)["locals"]:
        if "tiers" in block:
            return {int(k): v for k, v in block["tiers"].items()}
    raise AssertionError(f"{module}: no tier map in locals")


def docs_table() -> dict[int, list[str]]:
    rows = re.findall(r"^\| ([1-4]) \| (.+) \|$", (TF / "README.md").read_text(), re.M)
    return {int(tier): [cell.strip() for cell in rest.split("|")] for tier, rest in rows}


# ------------------------------------------------------------------------------------------------ fmt

@terraform
def test_terraform_fmt(tmp_path):
    out = run_tf(["fmt", "-check", "-recursive", "-diff"], TF, tf_env(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr


# ------------------------------------------------------------------------------------------------ AWS

def provider_mirror() -> Path | None:
    for root in (Path("/opt"), Path("/usr/share"), Path("/usr/local/share"), Path.home()):
        candidate = root / "tf-plugins"
        if (candidate / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
            return candidate
    return None


@pytest.fixture(scope="module")
def aws_module(tmp_path_factory) -> tuple[Path, dict]:
    """terraform/ copied to a temp folder and the AWS module initialised from the local provider mirror."""
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not on PATH")
    mirror = provider_mirror()
    if mirror is None:
        pytest.skip("no AWS provider mirror (tf-plugins) on this machine and no registry access")
    work = tmp_path_factory.mktemp("tf")
    shutil.copytree(TF, work / "terraform", ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*", "tfplan"))
    (work / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "tiers.yaml", work / "configs" / "tiers.yaml")  # the one table of tier sizes
    module, env = work / "terraform" / "aws", tf_env(work)
    out = run_tf(["init", "-backend=false", "-input=false", f"-plugin-dir={mirror}"], module, env)
    assert out.returncode == 0, out.stdout + out.stderr
    return module, env


def test_aws_validate(aws_module):
    module, env = aws_module
    out = run_tf(["validate"], module, env)
    assert out.returncode == 0 and "The configuration is valid" in out.stdout, out.stdout + out.stderr


def test_aws_terraform_test_with_mocked_provider(aws_module):
    module, env = aws_module
    out = run_tf(["test"], module, env, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr
    passed = re.search(r"Success! (\d+) passed, 0 failed", out.stdout)
    runs = sum(t.read_text().count('\nrun "') for t in (module / "tests").glob("*.tftest.hcl"))
    assert passed and int(passed.group(1)) == runs, out.stdout[-2000:]
    for name in ("tier_1", "tier_4_gpu", "ssh_only_from_given_cidrs", "no_admin_port_without_admin_cidrs",
                 "hardening", "tier_5_is_refused", "malformed_ssh_cidr_is_refused"):
        assert re.search(rf'run "{name}"\.\.\. pass', out.stdout), name


# ------------------------------------------------------------------------------------ both, statically

@pytest.mark.parametrize("module", ["aws", "gcp"])
def test_every_variable_documented_and_typed(module):
    for name, body in variables(module).items():
        assert body.get("description", "").strip(), f"{module}: variable {name} has no description"
        assert "type" in body, f"{module}: variable {name} has no type"
    v = variables(module)
    assert "default" not in v["allowed_ssh_cidrs"] and "default" not in v["allowed_api_cidrs"]
    assert v["admin_cidrs"]["default"] == []
    assert any("endswith(c, \"/0\")" in str(rule) for rule in v["allowed_ssh_cidrs"]["validation"])
    assert any("cidrhost" in str(rule) for rule in v["allowed_ssh_cidrs"]["validation"])
    assert "contains([1, 2, 3, 4], var.tier)" in str(v["tier"]["validation"])
    assert "length(trimspace(var.region)) > 0" in str(v["region"]["validation"])


@pytest.mark.parametrize("module", ["aws", "gcp"])
def test_required_files_and_pinned_versions(module):
    for name in ("versions.tf", "variables.tf", "main.tf", "outputs.tf", "examples/basic/main.tf"):
        assert (TF / module / name).is_file(), name
    tf = parse(module)["terraform"][0]
    assert re.fullmatch(r">= 1\.\d+\.\d+, < 2\.0\.0", tf["required_version"])
    provider = next(iter(tf["required_providers"][0].values()))
    assert re.fullmatch(r">= \d+\.\d+\.\d+, < \d+\.0\.0", provider["version"])
    outputs = {name for block in parse(module)["output"] for name in block}
    assert {"public_ip", "ssh_command", "gateway_url", "admin_tunnel_command", "tier", "instance_type",
            "monthly_cost_estimate_usd"} <= outputs
    assert not any("sensitive" in body for block in parse(module)["output"] for body in block.values()), \
        "no output should need to be sensitive: secrets never enter Terraform"


def test_tier_maps_match_the_docs_and_the_tier_table():
    """Machine types in Terraform, sizes in configs/tiers.yaml (the one table), both in terraform/README.md."""
    import yaml

    sizes = yaml.safe_load((ROOT / "configs" / "tiers.yaml").read_text())["tiers"]
    docs, aws, gcp = docs_table(), tier_map("aws"), tier_map("gcp")
    assert set(docs) == set(aws) == set(gcp) == set(TIERS) == set(sizes)
    for tier in TIERS:
        row = docs[tier]
        assert row[0].startswith(aws[tier]["instance_type"] + " ") and row[1] == f"{sizes[tier]['disk_gb']} GB"
        assert row[2] == str(aws[tier]["monthly_usd"])
        gcp_type = gcp[tier]["machine_type"] + (f" + {gcp[tier]['gpu']}" if gcp[tier]["gpu"] else "")
        assert row[3].startswith(gcp_type) and row[4] == f"{sizes[tier]['disk_gb']} GB"
        assert row[5] == str(gcp[tier]["monthly_usd"])
        # each cloud's machine has the memory the tier is sized for (a GCP n1-standard-4 has 15 GiB: tier 4's)
        assert aws[tier]["memory_gib"] >= sizes[tier]["memory_gib"] <= gcp[tier]["memory_gib"], tier
    assert re.search(r"as\s+of\s+2026-11-22", (TF / "README.md").read_text()), "the prices need their date"
    assert [aws[t]["instance_type"] for t in TIERS] == ["t3.small", "t3.medium", "t3.xlarge", "g4dn.xlarge"]
    assert [gcp[t]["machine_type"] for t in TIERS] == ["e2-small", "e2-medium", "e2-standard-4", "n1-standard-4"]


def test_gpu_only_on_tier_4():
    aws, gcp = tier_map("aws"), tier_map("gcp")
    assert [aws[t]["gpu"] for t in TIERS] == [False, False, False, True]
    assert [gcp[t]["gpu"] for t in TIERS] == ["", "", "", "nvidia-tesla-t4"]
    vm = resources("gcp", "google_compute_instance")["stack"]
    accel = vm["dynamic"][0]["guest_accelerator"]
    assert accel["for_each"] == '${local.tier.gpu != "" ? [local.tier.gpu] : []}'
    assert vm["scheduling"][0]["on_host_maintenance"] == '${local.tier.gpu != "" ? "TERMINATE" : "MIGRATE"}'


def test_changes_to_a_running_vm_keep_it_and_its_disk():
    """A new tier grows the disk in place, a new image, boot script or SSH key replaces nothing (the provider
    would replace a VM whose own disk arguments change: the GCP boot disk is its own resource, attached)."""
    aws = resources("aws", "aws_instance")["stack"]
    assert set(aws["lifecycle"][0]["ignore_changes"]) == {"ami", "user_data", "key_name"}
    assert aws["root_block_device"][0]["volume_size"] == "${local.disk_gb}"  # EBS grows in place
    assert aws["disable_api_termination"] == "${var.deletion_protection}"
    disk = resources("gcp", "google_compute_disk")["boot"]
    vm = resources("gcp", "google_compute_instance")["stack"]
    assert disk["size"] == "${local.disk_gb}" and disk["lifecycle"][0]["ignore_changes"] == ["image"]
    boot = vm["boot_disk"][0]
    assert boot["source"] == "${google_compute_disk.boot.self_link}" and boot["auto_delete"] is False
    assert "initialize_params" not in boot
    assert vm["lifecycle"][0]["ignore_changes"] == ['${metadata["user-data"]}']
    assert vm["deletion_protection"] == "${var.deletion_protection}" and vm["allow_stopping_for_update"] is True
    assert vm["metadata"]["tier"] == "${tostring(var.tier)}"  # read at every start (the boot's tier.sh)


def test_gcp_firewall_sources():
    rules = resources("gcp", "google_compute_firewall")
    assert set(rules) == {"ssh", "ssh_deny_others", "acme", "api", "admin"}
    assert rules["ssh"]["source_ranges"] == "${var.allowed_ssh_cidrs}"
    assert rules["ssh"]["allow"][0]["ports"] == ["22"]
    # the default network's default-allow-ssh (0.0.0.0/0 at 65534) loses to a deny at 950; ours allows at 900
    deny = rules["ssh_deny_others"]
    assert deny["deny"][0]["ports"] == ["22"] and deny["priority"] == 950 < 65534 and rules["ssh"]["priority"] == 900
    assert rules["acme"]["allow"][0]["ports"] == ["80"] and rules["acme"]["count"] == '${var.tls_domain != "" ? 1 : 0}'
    assert rules["api"]["source_ranges"] == "${var.allowed_api_cidrs}"
    assert rules["admin"]["source_ranges"] == "${var.admin_cidrs}"
    assert rules["admin"]["count"] == "${length(var.admin_cidrs) > 0 ? 1 : 0}"
    assert rules["admin"]["allow"][0]["ports"] == "${local.admin_ports}"
    locals_ = {k: v for block in parse("gcp")["locals"] for k, v in block.items()}
    assert set(locals_["admin_ports"]) == ADMIN_PORTS
    # The API rule never opens an admin port: gateway_port's validation excludes them.
    assert "!contains([3000, 5678, 9090], var.gateway_port)" in str(variables("gcp")["gateway_port"]["validation"])
    for rule in rules.values():
        assert rule["direction"] == "INGRESS" and rule["target_tags"] == ["${var.name}"]
    vm = resources("gcp", "google_compute_instance")["stack"]
    assert vm["tags"] == ["${var.name}"]
    meta = vm["metadata"]
    assert meta["block-project-ssh-keys"] is True and meta["serial-port-enable"] is False
    assert meta["enable-oslogin"] == '${var.ssh_public_key == "" ? "TRUE" : "FALSE"}'


# The Google provider's schema for the resources terraform/gcp uses, generated by scripts/testing/gcp_provider_schema.py
# from HashiCorp's generated bindings (no Google provider can run here, so `terraform validate` cannot check GCP).
GCP_SCHEMA = json.loads((ROOT / "tests" / "deploy" / "data" / "google-provider-schema.json").read_text())
META_ARGUMENTS = {"count", "for_each", "depends_on", "provider", "lifecycle"}


def _not_in_schema(body: dict, schema: dict, where: str) -> list[str]:
    """Arguments and blocks the provider does not know, and required arguments missing, in a resource body."""
    problems = []
    for key, value in body.items():
        if key in ("__comments__", "__inline_comments__") or (key in META_ARGUMENTS and where.count(".") == 1):
            continue
        if key == "dynamic":
            for dynamic in value:
                for name, spec in dynamic.items():
                    if name not in schema["blocks"]:
                        problems.append(f"{where}: dynamic block {name!r} is not one the provider knows")
                    for content in spec.get("content", []):
                        problems += _not_in_schema(content, schema["blocks"].get(name, {"arguments": {}, "blocks": {}}),
                                                   f"{where}.{name}")
        elif key in schema["blocks"]:
            for item in value if isinstance(value, list) else [value]:
                problems += _not_in_schema(item, schema["blocks"][key], f"{where}.{key}")
        elif key not in schema["arguments"]:
            problems.append(f"{where}: {key!r} is not an argument the provider knows")
    problems += [f"{where}: required argument {arg!r} missing" for arg, required in schema["arguments"].items()
                 if required and arg not in body]
    return problems


def test_gcp_resources_use_only_arguments_the_provider_knows():
    assert GCP_SCHEMA["source"].startswith("@cdktf/provider-google")
    problems, seen = [], set()
    for block in parse("gcp")["resource"]:
        for kind, named in block.items():
            seen.add(kind)
            assert kind in GCP_SCHEMA["resources"], f"{kind}: rerun scripts/testing/gcp_provider_schema.py"
            for name, body in named.items():
                problems += _not_in_schema(body, GCP_SCHEMA["resources"][kind], f"{kind}.{name}")
    assert seen and not problems, problems


def test_a_wrong_gcp_argument_would_be_caught():
    instance = GCP_SCHEMA["resources"]["google_compute_instance"]
    body = {"name": "x", "machine_type": "e2-small", "boot_disk": [{"initialize_params": [{"imaeg": "ubuntu"}]}],
            "network_interface": [{"network": "default"}], "metadata_startup": "oops"}
    problems = _not_in_schema(body, instance, "google_compute_instance.x")
    assert any("'imaeg'" in p for p in problems) and any("'metadata_startup'" in p for p in problems)


@pytest.mark.parametrize("module", ["aws", "gcp"])
def test_every_reference_is_declared(module):
    """var.X and local.X only where the module declares X: `terraform validate` checks it for AWS, nothing runs
    for GCP, where an undeclared variable would fail only at apply."""
    text = "\n".join(re.sub(r"(?m)^\s*(#|//).*$", "", p.read_text()) for p in (TF / module).glob("*.tf"))
    parsed = parse(module)
    declared_vars = {name for block in parsed["variable"] for name in block}
    declared_locals = {name for block in parsed.get("locals", []) for name in block if name != "__comments__"}
    used_vars, used_locals = set(re.findall(r"\bvar\.(\w+)", text)), set(re.findall(r"\blocal\.(\w+)", text))
    assert used_vars <= declared_vars, f"undeclared variables: {sorted(used_vars - declared_vars)}"
    assert used_locals <= declared_locals, f"undeclared locals: {sorted(used_locals - declared_locals)}"
    assert declared_vars <= used_vars, f"variables nothing uses: {sorted(declared_vars - used_vars)}"


@pytest.mark.parametrize("module", ["aws", "gcp"])
def test_no_world_open_ingress_in_code(module):
    """0.0.0.0/0 only where it must be: AWS's egress and internet route, port 80 for Let's Encrypt with TLS
    (only then, and only 80), and GCP's SSH deny rule."""
    net = (TF / module / "network.tf").read_text()
    for path in (TF / module).glob("*.tf"):
        for line in path.read_text().splitlines():
            if ("0.0.0.0/0" in line or "::/0" in line) and not re.match(r"\s*(description|error_message|#)", line):
                assert path.name == "network.tf", f"{path.name}: {line.strip()}"
    if module == "aws":
        assert net.count("0.0.0.0/0") == 3
        assert re.search(r'egress_rule" "all_ipv4".*?cidr_ipv4\s+= "0.0.0.0/0"', net, re.S)
        assert re.search(r'ingress_rule" "acme" \{[^}]*count\s+= var.tls_domain != "" \? 1 : 0[^}]*from_port\s+= 80\s+'
                         r'to_port\s+= 80\s+cidr_ipv4\s+= "0.0.0.0/0"', net, re.S)
    else:
        rules = resources("gcp", "google_compute_firewall")
        world = {name for name, rule in rules.items() if rule["source_ranges"] == ["0.0.0.0/0"]}
        assert world == {"acme", "ssh_deny_others"} and "allow" not in rules["ssh_deny_others"]


def test_secrets_never_enter_terraform():
    for module in ("aws", "gcp"):
        text = "".join(p.read_text() for p in (TF / module).glob("*.tf"))
        assert "random_password" not in text and "sk-ant" not in text
        for name in variables(module):
            assert not re.search(r"(api_key|password|token)$", name), f"{module}: {name} would carry a secret value"


# ----------------------------------------------------------------------------------------- checkov

@pytest.mark.parametrize("module", ["aws", "gcp"])
def test_checkov_has_no_unexplained_finding(module):
    checkov = cached_tool("checkov")
    out = subprocess.run([checkov, "-d", str(TF / module), "--framework", "terraform", "--skip-download",
                          "-o", "json"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    reports = json.loads(out.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [c for r in reports for c in r["results"]["failed_checks"]]
    skipped = [c for r in reports for c in r["results"]["skipped_checks"]]
    passed = sum(r["summary"]["passed"] for r in reports)
    assert passed > 20 and not failed, [(c["check_id"], c["resource"], c["check_name"]) for c in failed]
    for check in skipped:
        comment = (check.get("check_result") or {}).get("suppress_comment", "")
        assert len(comment) > 20, f"{check['check_id']} on {check['resource']} is skipped without a reason"


# ------------------------------------------------------------------------------------------ boot script

TEMPLATE_VARS = {"cloud", "tier", "stack_dir", "stack_repo_url", "stack_ref", "stack_archive_url", "gateway_port",
                 "admin_public", "tls_domain", "tls_email", "anthropic_secret", "gateway_keys_secret",
                 "budget_monthly_usd", "gpu", "backup_bucket", "backup_schedule"}


@pytest.mark.parametrize("module", ["aws", "gcp"])
def test_both_modules_render_the_shared_template(module):
    text = (TF / module / "main.tf").read_text()
    call = re.search(r'templatefile\("\$\{path\.module\}/\.\./cloud-init/bootstrap\.sh\.tftpl", \{(.*?)\n  \}\)', text,
                     re.S)
    assert call, f"{module} does not render cloud-init/bootstrap.sh.tftpl"
    assert set(re.findall(r"^\s+(\w+)\s+=", call.group(1), re.M)) == TEMPLATE_VARS


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[tuple[str, int], str]:
    """The boot script rendered by Terraform's own templatefile for every cloud and tier."""
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not on PATH")
    work = tmp_path_factory.mktemp("render")
    template = TF / "cloud-init" / "bootstrap.sh.tftpl"
    outputs = []
    for cloud in ("aws", "gcp"):
        for tier in TIERS:
            secret = "arn:aws:secretsmanager:eu-west-1:1:secret:k" if cloud == "aws" else "anthropic-key"
            outputs.append(f'''output "{cloud}_{tier}" {{
  value = templatefile("{template}", {{
    cloud = "{cloud}", tier = {tier}, stack_dir = "/opt/hybrid-ai-stack",
    stack_repo_url = "https://example.com/stack.git", stack_ref = "v1.0.0", stack_archive_url = "",
    gateway_port = 8080, admin_public = {str(tier == 3).lower()},
    tls_domain = "{'ai.example.com' if tier == 2 else ''}",
    tls_email = "", anthropic_secret = "{secret if tier >= 2 else ''}", gateway_keys_secret = "",
    budget_monthly_usd = 25, gpu = {str(tier == 4).lower()},
    backup_bucket = "{'s3://stack-backups/hybrid-ai-stack' if tier == 3 else ''}", backup_schedule = "daily"
  }})
}}''')
    (work / "main.tf").write_text("\n".join(outputs))
    env = tf_env(work)
    out = run_tf(["apply", "-auto-approve", "-input=false"], work, env)
    assert out.returncode == 0, out.stdout + out.stderr
    values = json.loads(run_tf(["output", "-json"], work, env).stdout)
    return {(c, t): values[f"{c}_{t}"]["value"] for c in ("aws", "gcp") for t in TIERS}


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
@pytest.mark.parametrize("tier", TIERS)
def test_boot_script_renders_and_passes_shellcheck(rendered, cloud, tier, tmp_path):
    script = rendered[(cloud, tier)]
    path = tmp_path / f"bootstrap-{cloud}-{tier}.sh"
    path.write_text(script)
    out = subprocess.run([tool("shellcheck"), str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
    assert script.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in script
    assert f'CLOUD="{cloud}"' in script and f'TIER="{tier}"' in script
    assert f'GPU="{str(tier == 4).lower()}"' in script
    assert "ExecStart=$STACK_DIR/deploy-all.sh docker --yes" in script  # the tier from .env, kept current
    assert "ExecStartPre=-$STATE_DIR/tier.sh $CLOUD $STACK_DIR" in script
    assert "systemctl enable $UNIT" in script and "python3 scripts/init_env.py" in script
    assert "${" not in script.split("UNIT=hybrid-ai-stack.service")[0].split("set -euo pipefail")[1], \
        "every template variable must be rendered"


@pytest.mark.parametrize("tier", [3, 2], ids=["plain", "tls-domain"])
def test_boot_script_runs_its_env_step_for_real(rendered, tmp_path, tier):
    """write_env on a real checkout copy: .env gets the tier and binds, secrets are generated, mode 600; with a
    TLS domain, the stack's own edge gets it (deploy-all then adds docker-compose.tls.yml)."""
    stack = tmp_path / "stack"
    stack.mkdir()
    for name in (".env.example",):
        shutil.copy(ROOT / name, stack / name)
    (stack / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "init_env.py", stack / "scripts" / "init_env.py")
    script = rendered[("gcp", tier)]
    script = script.replace('STACK_DIR="/opt/hybrid-ai-stack"', f'STACK_DIR="{stack}"')
    script = script.replace("exec >>/var/log/hybrid-ai-stack-bootstrap.log 2>&1", "")
    script = script.replace('ANTHROPIC_SECRET="anthropic-key"', 'ANTHROPIC_SECRET=""')
    script = re.sub(r"\nmain \"\$@\"\n$", "\nwrite_env\n", script)
    path = tmp_path / "env-step.sh"
    path.write_text(script)
    out = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    env = dict(line.split("=", 1) for line in (stack / ".env").read_text().splitlines()
               if "=" in line and not line.startswith("#"))
    assert env["DEPLOYMENT_TIER"] == str(tier)
    if tier == 3:
        assert env["ADMIN_BIND"] == "0.0.0.0" and env["GATEWAY_BIND"] == "0.0.0.0" and not env.get("GATEWAY_DOMAIN")
        assert env["BUDGET_MONTHLY_USD"] == "25"
    else:  # HTTPS at the edge on 443; the plain port answers the VM alone
        assert env["GATEWAY_DOMAIN"] == "ai.example.com" and env["GATEWAY_BIND"] == "127.0.0.1"
    assert "caddy" not in script.lower().replace("configs/caddy/caddyfile", "")  # no second Caddy on the host
    assert len(env["REDIS_PASSWORD"]) >= 32 and env["GATEWAY_API_KEYS"].startswith("gw-")
    assert oct((stack / ".env").stat().st_mode & 0o777) == "0o600"
    assert env["REDIS_PASSWORD"] not in out.stdout + out.stderr


def _sandbox(tmp_path: Path, script: str, stubs: dict[str, str]) -> tuple[Path, Path, dict[str, str]]:
    """The boot script in a sandbox: BOOT_ROOT for its system paths, a stack checkout, stub commands."""
    root, stack, bindir = tmp_path / "root", tmp_path / "stack", tmp_path / "bin"
    for d in ("etc/systemd/system", "etc/apt/sources.list.d", "etc/apt/keyrings", "usr/share/keyrings"):
        (root / d).mkdir(parents=True)
    (stack / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / ".env.example", stack / ".env.example")
    shutil.copy(ROOT / "scripts" / "init_env.py", stack / "scripts" / "init_env.py")
    (stack / "deploy-all.sh").write_text("#!/bin/sh\n")  # fetched already
    bindir.mkdir()
    for name, body in stubs.items():
        (bindir / name).write_text(f"#!/bin/sh\necho \"{name} $*\" >>{tmp_path}/calls\n{body}\n")
        (bindir / name).chmod(0o755)
    path = tmp_path / "bootstrap.sh"
    path.write_text(script.replace('STACK_DIR="/opt/hybrid-ai-stack"', f'STACK_DIR="{stack}"'))
    return root, path, {**os.environ, "BOOT_ROOT": str(root), "PATH": f"{bindir}:/usr/bin:/bin"}


GPU_STUBS = {
    "docker": "exit 0",                                  # Docker Engine and compose installed already
    "systemctl": "exit 0", "apt-get": "exit 0", "nvidia-ctk": "exit 0", "curl": "exit 0", "gpg": "exit 0",
    "snap": "exit 0", "aws": "echo sk-ant-from-the-secret-manager", "gcloud": "echo sk-ant-from-the-secret-manager",
    "ubuntu-drivers": 'case "$1" in list) printf "nvidia-driver-535-server\\nnvidia-driver-570-server, (kernel)\\n" ;; '
                      "esac",
}


def test_the_gpu_boot_resumes_after_the_drivers_reboot(rendered, tmp_path):
    """Tier 4: the first run installs the versioned driver and utilities and reboots; the boot unit runs the
    script again, which skips what is done, starts the stack and retires itself."""
    root, script, env = _sandbox(tmp_path, rendered[("aws", 4)], GPU_STUBS)
    first = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    log = (root / "var/log/hybrid-ai-stack-bootstrap.log").read_text()
    assert first.returncode == 0, log
    calls = (tmp_path / "calls").read_text()
    assert "ubuntu-drivers install --gpgpu nvidia:570-server" in calls
    assert "apt-get install -y -qq nvidia-utils-570-server" in calls and "nvidia-utils-server" not in calls
    assert "systemctl enable hybrid-ai-stack-boot.service" in calls and "systemctl reboot" in calls
    assert "systemctl start hybrid-ai-stack.service" not in calls  # not before the GPU works
    state = root / "var/lib/hybrid-ai-stack"
    assert {p.name for p in state.glob("*.done")} == {f"{s}.done" for s in ("docker", "stack", "env", "unit", "backups",
                                                                           "nvidia")}
    unit = (root / "etc/systemd/system/hybrid-ai-stack-boot.service").read_text()
    assert f"ExecStart={state}/bootstrap.sh" in unit and f"ConditionPathExists=!{state}/boot.done" in unit

    # after the reboot the driver works; the boot unit runs the installed copy of the script
    (tmp_path / "calls").write_text("")
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.write_text("#!/bin/sh\nexit 0\n")
    smi.chmod(0o755)
    second = subprocess.run(["bash", str(state / "bootstrap.sh")], env=env, capture_output=True, text=True,
                            timeout=60)
    log = (root / "var/log/hybrid-ai-stack-bootstrap.log").read_text()
    assert second.returncode == 0, log
    calls = (tmp_path / "calls").read_text()
    assert "apt-get" not in calls and "ubuntu-drivers" not in calls  # every finished stage skipped
    assert "systemctl start hybrid-ai-stack.service" in calls
    assert "systemctl disable hybrid-ai-stack-boot.service" in calls
    assert (state / "boot.done").exists() and "stage nvidia: done before" in log


def test_a_gpu_that_still_fails_after_the_reboot_stops_the_boot_loudly(rendered, tmp_path):
    root, script, env = _sandbox(tmp_path, rendered[("gcp", 4)], GPU_STUBS)
    assert subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=60).returncode == 0
    again = subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=60)
    log = (root / "var/log/hybrid-ai-stack-bootstrap.log").read_text()
    assert again.returncode == 1 and "FAILED: nvidia-smi fails after the driver's reboot" in log
    assert "systemctl start hybrid-ai-stack.service" not in (tmp_path / "calls").read_text()


def test_a_named_secret_that_cannot_be_read_stops_the_boot(rendered, tmp_path):
    """Generating new gateway keys instead would lock out every client that holds the real ones."""
    stubs = {**GPU_STUBS, "aws": "exit 255", "snap": "exit 0"}
    root, script, env = _sandbox(tmp_path, rendered[("aws", 2)], stubs)
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, timeout=60)
    log = (root / "var/log/hybrid-ai-stack-bootstrap.log").read_text()
    assert out.returncode == 1 and "FAILED: cannot read the secret" in log
    assert "GATEWAY_API_KEYS=gw-" not in ((tmp_path / "stack" / ".env").read_text()
                                          if (tmp_path / "stack" / ".env").exists() else "")


# ------------------------------------------------------------------------------------------ deploy-all

@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_deploy_all_cloud_plan_only_dry_run_prints_terraform_commands(cloud):
    out = subprocess.run(["./deploy-all.sh", cloud, "2", "--plan-only", "--dry-run"], cwd=ROOT, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    tf = f"+ terraform -chdir=terraform/{cloud}"
    assert out.stdout.splitlines() == [f"{tf} init -input=false", f"{tf} plan -input=false -var tier=2 -out=tfplan"]


def test_deploy_all_cloud_dry_run_full_sequence_and_bad_tier():
    out = subprocess.run(["./deploy-all.sh", "aws", "4", "--dry-run", "--yes"], cwd=ROOT, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    tf = "+ terraform -chdir=terraform/aws"
    assert out.stdout.splitlines() == [f"{tf} init -input=false", f"{tf} plan -input=false -var tier=4 -out=tfplan",
                                       f"{tf} apply -input=false tfplan", "+ wait for http://VM:8080/health",
                                       f"{tf} output"]
    out = subprocess.run(["./deploy-all.sh", "gcp", "2", "--destroy", "--dry-run"], cwd=ROOT, capture_output=True,
                         text=True, timeout=30)
    tf = "+ terraform -chdir=terraform/gcp"
    assert out.returncode == 0 and out.stdout.splitlines() == [
        f"{tf} init -input=false",
        f"{tf} apply -input=false -auto-approve -var tier=2 -var deletion_protection=false "
        "-target=google_compute_instance.stack",  # the cloud refuses to delete a protected VM
        f"{tf} destroy -input=false -auto-approve -var tier=2 -var deletion_protection=false"]
    out = subprocess.run(["./deploy-all.sh", "aws", "5", "--dry-run"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0 and "tier must be 1, 2, 3 or 4" in out.stderr


def test_deploy_all_cloud_needs_the_required_variables(tmp_path):
    """Without terraform.tfvars or TF_VAR_*, it stops before terraform with the file to create."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_tf = bin_dir / "terraform"
    fake_tf.write_text("#!/bin/sh\necho terraform-called >&2\nexit 0\n")
    fake_tf.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_VAR_", "AWS_"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", AWS_ACCESS_KEY_ID="AKIAEXAMPLE", HOME=str(tmp_path))
    if (TF / "aws" / "terraform.tfvars").exists():
        pytest.skip("a local terraform/aws/terraform.tfvars exists (a developer's own)")
    out = subprocess.run(["./deploy-all.sh", "aws", "2", "--plan-only"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0 and "terraform-called" not in out.stderr
    assert "cp terraform/aws/terraform.tfvars.example terraform/aws/terraform.tfvars" in out.stderr
    env.pop("AWS_ACCESS_KEY_ID")
    out = subprocess.run(["./deploy-all.sh", "aws", "2", "--plan-only"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0 and "no AWS credentials" in out.stderr
