#!/usr/bin/env bash
# Run the test suite: creates .venv if needed, installs the pinned test dependencies, lints, runs pytest.
# Usage: ./scripts/test.sh [pytest args...]     (VENV=path to use another virtual environment)
set -euo pipefail

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  # shellcheck source=scripts/lib.sh
  . scripts/lib.sh
  local venv="${VENV:-.venv}"
  ensure_venv "$venv" test
  info "ruff check"
  "$venv/bin/ruff" check .
  info "pytest"
  "$venv/bin/python" -m pytest "$@"
}

main "$@"
