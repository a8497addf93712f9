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

# wait_healthy URL [SECONDS]: poll URL/health until it answers (default HEALTH_TIMEOUT or 180 s);
# with DRY_RUN=1 only say so. Returns 1 on timeout.
wait_healthy() {
  local url="$1" timeout="${2:-${HEALTH_TIMEOUT:-180}}" waited=0
  [ "${DRY_RUN:-0}" -eq 1 ] && { printf '+ wait for %s/health\n' "$url"; return 0; }
  printf '==> waiting for the gateway at %s ' "$url" >&2
  until python3 -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1] + '/health', timeout=2)" "$url" \
      2>/dev/null; do
    waited=$((waited + 2))
    if [ "$waited" -ge "$timeout" ]; then
      echo >&2
      warn "the gateway did not become healthy in ${timeout}s"
      return 1
    fi
    printf '.' >&2
    sleep 2
  done
  echo " up" >&2
}
