# Shared shell helpers; source it: . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck shell=bash

info() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
# run CMD...: run it, or with DRY_RUN=1 only print it.
run() {
  if [ "${DRY_RUN:-0}" -eq 1 ]; then
    printf '+ %s\n' "$*"
  else
    "$@"
  fi
}

need_cmd() { command -v "$1" >/dev/null 2>&1 || die "$1 is required${2:+ ($2)}"; }

# ensure_venv DIR [EXTRAS]: a virtual environment with the project installed (editable), pinned deps.
ensure_venv() {
  local venv="$1" extras="${2:-}"
  need_cmd python3 "3.11+"
  if [ ! -x "$venv/bin/python" ]; then
    info "creating virtual environment $venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
  fi
  info "installing pinned dependencies${extras:+ [$extras]}"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
}
