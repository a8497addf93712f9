#!/usr/bin/env bash
# Run the test suite: creates .venv if needed, installs the pinned test dependencies, lints, runs pytest.
# Usage: ./scripts/test.sh [pytest args...]     (VENV=path to use another virtual environment)
set -euo pipefail

info() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  local venv="${VENV:-.venv}"
  command -v python3 >/dev/null 2>&1 || die "python3 is required (3.11+)"
  if [ ! -x "$venv/bin/python" ]; then
    info "creating virtual environment $venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
  fi
  info "installing pinned dependencies"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test]"
  info "ruff check"
  "$venv/bin/ruff" check .
  info "pytest"
  "$venv/bin/python" -m pytest "$@"
}

main "$@"
