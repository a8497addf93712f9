#!/usr/bin/env bash
# Run the gateway natively under gunicorn (what the container runs), reading .env if present.
# Usage: ./scripts/run.sh          (VENV=path to use another virtual environment)
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ./scripts/run.sh
Runs the gateway in the foreground under gunicorn with gateway/gunicorn.conf.py, reading .env if present,
on GATEWAY_HOST:GATEWAY_PORT (no edge in front: for development; ./deploy-all.sh local for a real run).
Stop it with Ctrl-C. VENV=path uses another virtual environment.
EOF
}

main() {
  case "${1:-}" in
    -h | --help) usage; return 0 ;;
    "") ;;
    *) usage >&2; return 2 ;;
  esac
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
