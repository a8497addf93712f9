#!/usr/bin/env bash
# Mutation testing of the modules that hold money and shared state ([tool.mutmut] in pyproject.toml): every
# small change mutmut can make to them, each run against the in-process tests that cover it; then the kill
# rate per module and the survivors (scripts/testing/mutation_report.py). Slow (an hour or more on two
# cores), so not part of CI; scripts/testing/planted_bugs.py is the quick, targeted counterpart.
#
#   ./scripts/testing/mutation.sh [--report]     (--report: only print the report of the last run, from mutants/)
set -euo pipefail

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/../.."
  # shellcheck source=scripts/lib.sh
  . scripts/lib.sh
  local venv="${VENV:-.venv}"
  if [ "${1:-}" != --report ]; then
    command -v redis-server >/dev/null 2>&1 || die "the tests need redis-server (./scripts/test.sh installs it)"
    ensure_venv "$venv" "test,mutation"
    rm -rf mutants
    info "mutmut run (the first step runs the tests once to learn which cover what)"
    "$venv/bin/mutmut" run --max-children "$(nproc)" || true  # survivors are the result, not an error
  fi
  "$venv/bin/python" scripts/testing/mutation_report.py
}

main "$@"
