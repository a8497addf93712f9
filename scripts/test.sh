#!/usr/bin/env bash
# Run the test suite: creates .venv if needed, installs the pinned test dependencies, lints, runs pytest.
# Usage: ./scripts/test.sh [pytest args...]     (VENV=path to use another virtual environment)
set -euo pipefail

# The suite starts its own redis-server and prometheus on free loopback ports, drives a real Taskwarrior
# with a temporary TASKDATA, smoke-runs the gateway benchmark with wrk and puts the real Caddy in front of the
# gateway: it needs the binaries.
ensure_tools() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)  # checks the rendered Alertmanager config
  command -v task >/dev/null 2>&1 || missing+=(taskwarrior)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)   # the load generator of scripts/bench/bench_gateway.py
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # a certificate for the TLS upstream tests
  command -v caddy >/dev/null 2>&1 || missing+=(caddy)  # the edge in front of gunicorn (tests/integration/test_edge.py)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    info "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    die "the tests need: ${missing[*]} (sudo apt-get install ${missing[*]})"
  fi
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  # shellcheck source=scripts/lib.sh
  . scripts/lib.sh
  local venv="${VENV:-.venv}"
  ensure_tools
  [ -f .cache/grafana/dashboard.schema.json ] || ./scripts/testing/grafana_schema.sh
  # n8n (workflow tests) and checkov (Terraform checks) live in a cache outside the repo: instant on reruns.
  ./scripts/tools.sh n8n checkov >/dev/null
  ensure_venv "$venv" test
  info "ruff check"
  "$venv/bin/ruff" check .
  info "pytest"
  "$venv/bin/python" -m pytest "$@"
}

main "$@"
