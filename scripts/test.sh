#!/usr/bin/env bash
# Run the test suite: creates .venv if needed, installs the pinned test dependencies, lints, runs pytest.
# Usage: ./scripts/test.sh [pytest args...]     (VENV=path to use another virtual environment)
set -euo pipefail

# The suite starts its own redis-server on a free loopback port: it needs the binary, nothing running.
ensure_redis() {
  command -v redis-server >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    info "installing redis-server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    die "redis-server is needed by the tests: sudo apt-get install redis-server (or brew install redis)"
  fi
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  # shellcheck source=scripts/lib.sh
  . scripts/lib.sh
  local venv="${VENV:-.venv}"
  ensure_redis
  ensure_venv "$venv" test
  info "ruff check"
  "$venv/bin/ruff" check .
  info "pytest"
  "$venv/bin/python" -m pytest "$@"
}

main "$@"
