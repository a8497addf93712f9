""".env read the way Docker Compose reads it (scripts/envfile.py), checked against the real Compose binary: what
the containers see is what the native mode, deploy-all.sh and the scripts see."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.deploy.test_stack import tool

sys.path.insert(0, str(ROOT / "scripts"))
import envfile

CASES = {
    "PLAIN": "PLAIN=plain",
    "DOUBLE": 'DOUBLE="double # not a comment"',
    "SINGLE": "SINGLE='single $PLAIN \\n'",
    "COMMENTED": "COMMENTED=sk-ant-abc # my key",
    "QUOTED_KEY": 'QUOTED_KEY="sk-ant-abc" # my key',
    "ESCAPES": 'ESCAPES="esc\\nnl \\"q\\" $PLAIN ${PLAIN}x"',
    "EXPORTED": "export EXPORTED=exported",
    "SUBSTITUTED": "SUBSTITUTED=${PLAIN}-sub",
    "SPACED": "SPACED=   spaced   ",
    "MULTI": 'MULTI="multi\nline"',
    "HASH_INSIDE": "HASH_INSIDE=a#b",
    "DEFAULTED": "DEFAULTED=${NOT_SET_ANYWHERE:-dflt}",
    "EMPTY": "EMPTY=",
}


def test_values_are_what_compose_gives_the_containers(tmp_path):
    (tmp_path / ".env").write_text("# a comment\n\n" + "\n".join(CASES.values()) + "\n")
    (tmp_path / "docker-compose.yml").write_text(
        "services:\n  probe:\n    image: busybox\n    environment:\n"
        + "".join(f'      {key}: "${{{key}}}"\n' for key in CASES))
    out = subprocess.run([tool("docker-compose"), "config", "--format", "json"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env={k: v for k, v in os.environ.items() if k not in CASES})
    assert out.returncode == 0, out.stderr
    # `config` writes a literal $ as $$ (its output is a compose file again)
    compose = {k: v.replace("$$", "$") for k, v in json.loads(out.stdout)["services"]["probe"]["environment"].items()}
    ours = envfile.read(tmp_path / ".env", environ={})
    assert ours == {k: compose[k] for k in CASES}
    assert ours["COMMENTED"] == ours["QUOTED_KEY"] == "sk-ant-abc"  # the review's `# my key` case


def test_deploy_all_exports_the_same_values(tmp_path):
    (tmp_path / ".env").write_text("\n".join(CASES.values()) + "\n")
    script = f'eval "$({sys.executable} {ROOT / "scripts" / "envfile.py"} --shell .env)"; printf "%s|" ' + " ".join(
        f'"${key}"' for key in CASES)
    out = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={k: v for k, v in os.environ.items() if k not in CASES})
    assert out.stdout.split("|")[:-1] == list(envfile.read(tmp_path / ".env", environ={}).values())


def test_what_the_caller_exported_wins(tmp_path):
    (tmp_path / ".env").write_text("PLAIN=from-file\nOTHER=x\n")
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "envfile.py"), "--shell", ".env"], cwd=tmp_path,
                         capture_output=True, text=True, env={**os.environ, "PLAIN": "from-caller"}, check=True)
    assert "PLAIN" not in out.stdout and "export OTHER=x" in out.stdout


@pytest.mark.parametrize(("line", "value"), [("K='a b' # c", "a b"), ('K="a\\\\b"', "a\\b"), ("K=$", "$")])
def test_small_cases(line, value):
    assert envfile.parse(line, environ={})["K"] == value
