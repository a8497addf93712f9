#!/usr/bin/env bash
# Install the pinned tools the tests drive but the project does not import, each into its own folder under
# a cache outside the repository (reruns are instant), and print the path of each tool's binary.
#
#   ./scripts/tools.sh [--check] n8n|checkov|litellm ...     (TOOLS_CACHE_DIR overrides ~/.cache/hybrid-ai-stack)
#
# --check installs nothing: it prints the paths, or fails naming what is missing (the tests use it).
#
#   n8n      2.8.4, the newest n8n that runs on Node 20 (npm; cold ~11 min, warm ~5 min)
#   checkov  3.3.30, Terraform static analysis (own virtual environment, ~1 min)
#   litellm  the LiteLLM proxy, the peer scripts/bench/bench_gateway.py --litellm compares with (own venv, ~4 min)
set -euo pipefail

CHECK=0

N8N_VERSION=2.8.4
CHECKOV_VERSION=3.3.30
LITELLM_VERSION=1.100.5

# tool_venv DIR BIN PIP_SPEC...: a virtual environment with PIP_SPEC installed; prints DIR/bin/BIN.
tool_venv() {
  local dir="$1" bin="$2"
  shift 2
  if [ ! -x "$dir/bin/$bin" ]; then
    [ "$CHECK" -eq 0 ] || die "$bin is not installed: run ./scripts/tools.sh $bin"
    info "installing $* into $dir"
    python3 -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    [ -x "$dir/bin/$bin" ] || die "$* installed without $dir/bin/$bin"
  fi
  printf '%s\n' "$dir/bin/$bin"
}

install_n8n() {
  local dir="$1/n8n-$N8N_VERSION"
  local bin="$dir/node_modules/.bin/n8n"
  if [ ! -x "$bin" ]; then
    [ "$CHECK" -eq 0 ] || die "n8n is not installed: run ./scripts/tools.sh n8n"
    need_cmd npm "Node.js 20"
    info "installing n8n $N8N_VERSION into $dir (cold: ~11 min)"
    mkdir -p "$dir"
    # xlsx's published version points at a tarball outside the npm registry; the maintained fork is the
    # same code on npm. `npm install` (not ci): no lock file is kept.
    cat >"$dir/package.json" <<JSON
{
  "name": "hybrid-ai-stack-n8n",
  "private": true,
  "dependencies": {"n8n": "$N8N_VERSION"},
  "overrides": {"xlsx": "npm:@e965/xlsx@0.20.3"}
}
JSON
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
    [ -x "$bin" ] || die "n8n install finished without $bin"
  fi
  printf '%s\n' "$bin"
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  # shellcheck source=scripts/lib.sh
  . scripts/lib.sh
  [ "${1:-}" = --check ] && { CHECK=1; shift; }
  [ $# -ge 1 ] || die "usage: scripts/tools.sh [--check] n8n|checkov|litellm ..."
  local cache="${TOOLS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hybrid-ai-stack}" tool
  mkdir -p "$cache"
  for tool in "$@"; do
    case "$tool" in
      n8n) install_n8n "$cache" ;;
      checkov) tool_venv "$cache/checkov-$CHECKOV_VERSION" checkov "checkov==$CHECKOV_VERSION" ;;
      litellm) tool_venv "$cache/litellm-$LITELLM_VERSION" litellm "litellm[proxy]==$LITELLM_VERSION" ;;
      *) die "unknown tool: $tool (n8n, checkov, litellm)" ;;
    esac
  done
}

main "$@"
