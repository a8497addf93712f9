#!/usr/bin/env bash
# Run the gateway natively under gunicorn (what the container runs), reading .env if present.
# Usage: ./scripts/run.sh          (VENV=path to use another virtual environment)
set -euo pipefail

info() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  local venv="${VENV:-.venv}"
  command -v python3 >/dev/null 2>&1 || die "python3 is required (3.11+)"
  if [ ! -x "$venv/bin/gunicorn" ]; then
    info "creating $venv with the gateway's runtime dependencies"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e .
  fi
  if [ -f .env ]; then
    info "loading .env"
    set -a
    # shellcheck disable=SC1091
    . ./.env
    set +a
  fi
  exec "$venv/bin/gunicorn" -c gateway/gunicorn.conf.py "gateway:create_app()"
}

main "$@"
