#!/usr/bin/env bash
# Run the gateway natively under gunicorn (what the container runs), reading .env if present.
# Usage: ./scripts/run.sh          (VENV=path to use another virtual environment)
set -euo pipefail

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  # shellcheck source=scripts/lib.sh
  . scripts/lib.sh
  local venv="${VENV:-.venv}"
  [ -x "$venv/bin/gunicorn" ] || ensure_venv "$venv"
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
