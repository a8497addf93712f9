#!/usr/bin/env bash
# Prepare a machine for the Hybrid AI Stack: prerequisites (Ubuntu/Debian), .env with generated
# secrets, and the Python virtual environment. Safe to run twice: existing secrets are kept.
#
#   ./install.sh [--yes] [--dry-run] [--env-only] [--with-taskwarrior] [--no-docker]
set -euo pipefail

YES=0
DRY_RUN=0
ENV_ONLY=0
TASKWARRIOR=0
DOCKER=1

usage() {
  cat <<'EOF'
Usage: ./install.sh [options]

Installs what the stack needs on Ubuntu/Debian, creates .env from .env.example with generated secrets
(gateway API keys, Redis, Grafana, Postgres, n8n encryption key, Qdrant key; existing values are kept),
and creates the Python virtual environment (.venv) for the CLI, local mode and tests.

Options:
  --yes               do not ask before installing packages
  --dry-run           print every command instead of running it
  --env-only          only create/complete .env (no packages, no venv)
  --with-taskwarrior  also install taskwarrior
  --no-docker         skip Docker (for ./deploy-all.sh local)
  -h, --help          this help
EOF
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    run "$@"
  elif command -v sudo >/dev/null 2>&1; then
    run sudo "$@"
  else
    die "this step needs root: run as root or install sudo"
  fi
}

confirm() {
  [ "$YES" -eq 1 ] && return 0
  [ "$DRY_RUN" -eq 1 ] && return 0
  local answer
  read -r -p "$1 [y/N] " answer || true
  case "$answer" in y | Y | yes) return 0 ;; *) return 1 ;; esac
}

check_os() {
  local id="" like=""
  if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    id="$(. /etc/os-release && echo "${ID:-}")"
    # shellcheck disable=SC1091
    like="$(. /etc/os-release && echo "${ID_LIKE:-}")"
  fi
  case " $id $like " in
    *" ubuntu "* | *" debian "*) return 0 ;;
  esac
  die "unsupported OS '${id:-unknown}': install Docker Engine with the compose plugin (>= 2.24), python3-venv and git yourself, then run ./install.sh --env-only"
}

install_packages() {
  check_os
  local packages=(ca-certificates curl git python3 python3-venv python3-yaml)
  [ "$TASKWARRIOR" -eq 1 ] && packages+=(taskwarrior)
  # Local mode (./deploy-all.sh local) runs its own redis-server and Caddy edge beside gunicorn.
  [ "$DOCKER" -eq 0 ] && packages+=(redis-server caddy)
  info "packages: ${packages[*]}"
  confirm "Install these packages with apt-get?" || die "cancelled"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
  if [ "$DOCKER" -eq 0 ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    # the packages start system-wide services (Caddy on port 80, Redis on 6379) that local mode does not use
    as_root systemctl disable --now caddy redis-server || true
  fi
  if [ "$DOCKER" -eq 1 ]; then
    if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
      info "Docker with the compose plugin is already installed"
    else
      info "installing Docker Engine and the compose plugin (Docker's convenience script)"
      confirm "Download and run https://get.docker.com as root?" || die "cancelled"
      run sh -c "curl -fsSL https://get.docker.com | $( [ "$(id -u)" -eq 0 ] || echo sudo ) sh"
      if [ "$(id -u)" -ne 0 ]; then
        as_root usermod -aG docker "$USER"
        warn "log out and back in (or run: newgrp docker) so '$USER' can use Docker without sudo"
      fi
    fi
  fi
}

create_env() {
  local args=(--env .env --example .env.example)
  [ "$DRY_RUN" -eq 1 ] && args+=(--dry-run)
  python3 scripts/init_env.py "${args[@]}"
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")"
  # shellcheck source=scripts/lib.sh
  . scripts/lib.sh
  while [ $# -gt 0 ]; do
    case "$1" in
      --yes | -y) YES=1 ;;
      --dry-run) DRY_RUN=1 ;;
      --env-only) ENV_ONLY=1 ;;
      --with-taskwarrior) TASKWARRIOR=1 ;;
      --no-docker) DOCKER=0 ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
  done
  need_cmd python3 "apt-get install python3"
  if [ "$ENV_ONLY" -eq 0 ]; then
    install_packages
  fi
  create_env
  if [ "$ENV_ONLY" -eq 0 ]; then
    if [ "$DRY_RUN" -eq 1 ]; then
      printf '+ %s\n' "python3 -m venv .venv && .venv/bin/pip install -e ."
    else
      ensure_venv .venv
    fi
  fi
  info "done. Next: ./deploy-all.sh docker   (or ./deploy-all.sh local without Docker)"
}

main "$@"
