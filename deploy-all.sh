#!/usr/bin/env bash
# Run the Hybrid AI Stack: with Docker Compose, or natively (gateway + redis-server, Ollama of your own).
#
#   ./deploy-all.sh docker [TIER] [--gpu|--cpu]   the whole stack in containers
#   ./deploy-all.sh local  [TIER]                 the gateway natively, in the background
#   ./deploy-all.sh status | logs | down | stop   see it, follow it, remove containers, stop local mode
set -euo pipefail

DRY_RUN=0
YES=0
VOLUMES=0
LOCAL=0
JSON=
PRETTY=0
EXTERNAL_OLLAMA=""
PULL=0
SKIP_DOCTOR=0
DESTROY=0
PLAN_ONLY=0
PROFILE=""
KUBE_CONTEXT=""
RUN_DIR="${DEPLOY_RUN_DIR:-.run}"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-180}"

usage() {
  cat <<'EOF'
Usage: ./deploy-all.sh COMMAND [TIER] [options]

Commands:
  docker [TIER]   docker compose up the stack for deployment tier TIER (1-4, default DEPLOYMENT_TIER or 2);
                  profile gpu when an NVIDIA GPU and the container toolkit are present, else cpu
  local [TIER]    no Docker: the gateway under gunicorn from .venv, a private redis-server when installed,
                  Ollama at OLLAMA_URL; returns once healthy and leaves it running (pid files in .run/)
  doctor [TIER]   check this machine (Docker, Compose >= 2.24, disk, memory, ports, .env, GPU runtime;
                  with --local: your Ollama and its models, Redis, the edge, ports, .env);
                  docker and local run it first and stop on a problem (--skip-doctor to go on anyway)
  stop            stop what 'local' started
  reload          apply configs/models.yaml and the router's weights without dropping a request: checked
                  first, then gunicorn's graceful reload (docker or local; .env changes need a restart)
  key             print a gateway key to use (the first of GATEWAY_API_KEYS): export KEY=$(./deploy-all.sh key)
  status | ps      each service with its health, local processes, and the gateway's readiness (a line per
                  backend, coloured on a terminal; --json: the raw answer); exit 3 when it does not answer
  dashboards      local mode: Prometheus (and Grafana, if installed) on loopback, with the stack's rules
  logs [SERVICE]  follow the logs (one service or all of compose; local mode: gateway, edge or redis);
                  --pretty: the gateway's JSON lines as one readable line each (scripts/logview.py)
  down [--volumes]  stop and remove the containers; --volumes also deletes the data (asks first)
  backup [DIR]    Redis, batch files, Grafana, n8n's database and .env into one dated archive (--local: local mode)
  restore FILE    restore an archive into the stopped stack (--local: local mode)
  update [TIER]   back up, pull the pinned images, recreate, wait for health (says how to roll back)
  aws|gcp TIER    a cloud VM running the stack (Terraform in terraform/aws|gcp): init, plan, shows the
                  monthly estimate, asks, applies, waits for the gateway over HTTP, prints the outputs
                  (--plan-only: stop after the plan; --destroy: tear it down). See terraform/README.md.
  k8s [TIER]      the stack on a Kubernetes cluster (deploy/kubernetes, overlay cpu or --gpu): renders it,
                  makes the Secret from .env, applies, pulls the tier's models, waits for the rollout
                  (--context NAME: a kubeconfig context; GATEWAY_IMAGE: the gateway image to run)

Options:
  --gpu | --cpu   force the Ollama profile
  --mac           use the Ollama running natively on this Mac (Docker on macOS has no GPU); automatic on macOS
  --external-ollama URL   use an Ollama outside the stack (host or another machine); no Ollama container
  --pull          with an external Ollama: pull the tier's models into it
  --skip-doctor   do not stop on the doctor's problems
  --yes           do not ask (down --volumes, aws|gcp apply/destroy)
  --plan-only     aws|gcp: plan only
  --context NAME  k8s: the kubeconfig context to use
  --destroy       aws|gcp: destroy the VM and its network
  --dry-run       print every command instead of running it
  -h, --help      this help
Environment values already set override .env.
EOF
}

python_bin() {
  if [ -x .venv/bin/python ]; then echo .venv/bin/python; else echo python3; fi
}

# Load .env as Docker Compose reads it (quotes, comments; scripts/envfile.py), without overriding what the
# caller already exported. Safe to call twice.
load_env() {
  [ -f .env ] || return 0
  local exports
  exports="$("$(python_bin)" scripts/envfile.py --shell .env)" || die ".env could not be read (see above)"
  eval "$exports"
}

# set_env KEY VALUE: remember a setting in .env (one line per key, the file kept private), so that later
# runs (docker, update, status, the systemd unit) use what this one chose.
set_env() {
  [ "$DRY_RUN" -eq 1 ] && { printf '+ set %s in .env\n' "$1"; return 0; }
  [ -f .env ] || return 0
  local tmp
  tmp="$(mktemp .env.XXXXXX)"
  grep -v "^$1=" .env >"$tmp" || true
  printf '%s=%s\n' "$1" "$2" >>"$tmp"
  chmod 600 "$tmp"
  mv "$tmp" .env
}

# The tier's sizes from configs/tiers.yaml: container memory limits, Redis' maxmemory, the models to pull.
# A value set (not empty) in .env or the environment wins.
tier_env() {
  local line key
  while IFS= read -r line; do
    key="${line%%=*}"
    [ -n "${!key:-}" ] || export "$key=${line#*=}"
  done < <("$(python_bin)" scripts/tiers.py env "$1")
}

check_tier() {
  case "$1" in 1 | 2 | 3 | 4) ;; *) die "tier must be 1, 2, 3 or 4 (got '$1')" ;; esac
}

gateway_url() {
  echo "http://127.0.0.1:${GATEWAY_PORT:-8080}"
}

# Every service with its URL, where the key is, and two real requests with their time to answer.
smoke_test() {
  local mode="$1"
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '+ %s\n' "scripts/smoke.py --mode $mode"
    return 0
  fi
  "$(python_bin)" scripts/smoke.py --mode "$mode" --gateway-url "$(gateway_url)" \
    || warn "the smoke test did not pass (see above)"
}

# Run the doctor quietly before starting: only problems are printed; a blocking one stops here.
preflight() {
  local mode="$1" tier="$2"
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '+ %s\n' "scripts/doctor.py --mode $mode --tier $tier --quiet"
    return 0
  fi
  local extra=()
  [ "$PROFILE" = cpu ] && extra+=(--cpu)
  if ! "$(python_bin)" scripts/doctor.py --mode "$mode" --tier "$tier" --quiet "${extra[@]}"; then
    [ "$SKIP_DOCTOR" -eq 1 ] && { warn "doctor found problems; going on (--skip-doctor)"; return 0; }
    die "doctor found problems (above); fix them, or pass --skip-doctor"
  fi
}

# ---------------------------------------------------------------------------------------- docker
pick_profile() {
  if [ -n "$PROFILE" ]; then echo "$PROFILE"; return; fi
  if [ "${DEPLOYMENT_TIER:-}" = 4 ]; then echo gpu; return; fi  # the GPU tier: no quiet fallback to the CPU
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 \
      && docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia; then
    echo gpu
  else
    echo cpu
  fi
}

cmd_docker() {
  local tier="$1" profile="" models
  if [ "$DRY_RUN" -eq 0 ]; then
    need_cmd docker "run ./install.sh"
    docker compose version >/dev/null 2>&1 || die "the Docker Compose plugin is missing: run ./install.sh"
  fi
  if [ ! -f .env ]; then
    info ".env is missing: generating it (./install.sh --env-only)"
    run ./install.sh --env-only --yes
  fi
  load_env
  preflight docker "$tier"
  export DEPLOYMENT_TIER="$tier"
  tier_env "$tier"
  models="$OLLAMA_MODELS_TO_PULL"
  set_env DEPLOYMENT_TIER "$tier"  # `docker`, `update` and `status` without a tier, and the VM's unit, reuse it
  info "tier $tier memory limits: ollama ${OLLAMA_MEM_LIMIT} (gpu ${OLLAMA_GPU_MEM_LIMIT}), gateway ${GATEWAY_MEM_LIMIT}," \
       "redis ${REDIS_MEM_LIMIT} (maxmemory ${REDIS_MAXMEMORY}), prometheus ${PROMETHEUS_MEM_LIMIT}," \
       "grafana ${GRAFANA_MEM_LIMIT}, postgres ${POSTGRES_MEM_LIMIT}, n8n ${N8N_MEM_LIMIT}, qdrant ${QDRANT_MEM_LIMIT}," \
       "alertmanager ${ALERTMANAGER_MEM_LIMIT}, node-exporter ${NODE_EXPORTER_MEM_LIMIT}, cadvisor ${CADVISOR_MEM_LIMIT}"
  # An Ollama outside the stack chosen before (--mac, --external-ollama) stays chosen for reruns and updates.
  [ -z "$EXTERNAL_OLLAMA" ] && [ -n "${STACK_OLLAMA_URL:-}" ] && EXTERNAL_OLLAMA="$STACK_OLLAMA_URL"
  if [ -z "$EXTERNAL_OLLAMA" ] && [ "$(uname -s)" = Darwin ]; then
    EXTERNAL_OLLAMA="http://host.docker.internal:11434"  # Docker on macOS cannot use the GPU: Ollama runs natively
  fi
  if [ -n "$EXTERNAL_OLLAMA" ]; then
    # Checked from this machine: the container's host.docker.internal is our 127.0.0.1.
    local from_here="${EXTERNAL_OLLAMA/host.docker.internal/127.0.0.1}"
    "$(python_bin)" scripts/ollama_tools.py check "$from_here" || die "the external Ollama is not reachable"
    if [ "$(uname -s)" = Linux ] && [[ "$EXTERNAL_OLLAMA" == *host.docker.internal* ]] && command -v ss >/dev/null 2>&1 \
        && ss -Hltn 'sport = :11434' | grep -q '127.0.0.1:11434' && ! ss -Hltn 'sport = :11434' | grep -qE '(\*|0\.0\.0\.0|\[::\]):11434'; then
      die "Ollama listens on 127.0.0.1 only, so containers cannot reach it: set OLLAMA_HOST=0.0.0.0 (sudo systemctl edit ollama)"
    fi
    if [ "$PULL" -eq 1 ]; then
      info "pulling tier $tier's models into $from_here: $models"
      # shellcheck disable=SC2086 # one argument per model
      run "$(python_bin)" scripts/ollama_tools.py pull "$from_here" $models
    fi
    export STACK_OLLAMA_URL="$EXTERNAL_OLLAMA"
    set_env STACK_OLLAMA_URL "$EXTERNAL_OLLAMA"
    info "tier $tier, external Ollama $EXTERNAL_OLLAMA (no Ollama container), models: $models"
    run docker compose up -d --build
  else
    profile="$(pick_profile)"
    if [ "$tier" = 4 ] && [ "$profile" != gpu ]; then
      [ "$PROFILE" = cpu ] || die "tier 4 is the GPU tier, and this machine has no usable NVIDIA GPU (doctor says why); " \
        "pass --cpu to run it on the CPU anyway"
      warn "tier 4 on the CPU (--cpu): Mistral-7B will be slow"
    fi
    use_profile "$profile"
    info "tier $tier, profile $profile, models: $models"
    run docker compose --profile "$profile" up -d --build
  fi
  wait_healthy "$(gateway_url)" || die "see: ./deploy-all.sh logs api-gateway"
  [ -n "$profile" ] && info "models are pulled in the background: docker compose logs -f ollama-pull-$profile"
  log_deploy "docker" "$tier"
  info "Grafana http://127.0.0.1:${GRAFANA_PORT:-3000} (user ${GRAFANA_ADMIN_USER:-admin}, password in .env)," \
       "n8n http://127.0.0.1:${N8N_PORT:-5678}, Prometheus http://127.0.0.1:${PROMETHEUS_PORT:-9090}"
  smoke_test docker
  gpu_truth "$profile"
}

# Remember the profile and its compose files in .env: later `docker compose` commands (logs, ps, down, update,
# the VM's unit) use the same ones. The gpu profile adds docker-compose.gpu.yml (the gateway's NVML access),
# GATEWAY_DOMAIN docker-compose.tls.yml (HTTPS at the edge).
use_profile() {
  local files=docker-compose.yml
  [ "$1" = gpu ] && files="$files:docker-compose.gpu.yml"
  if [ -n "${GATEWAY_DOMAIN:-}" ]; then
    # HTTPS at the edge; the plain port then answers the host alone
    files="$files:docker-compose.tls.yml"
    export GATEWAY_BIND=127.0.0.1
    set_env GATEWAY_BIND 127.0.0.1
  fi
  export COMPOSE_FILE="$files" COMPOSE_PROFILES="$1"
  info "compose files: ${files//:/, }"
  set_env COMPOSE_FILE "$files"
  set_env COMPOSE_PROFILES "$1"
}

# After the smoke test loaded a model: say whether it really runs on the GPU (gpu profile or external Ollama).
gpu_truth() {
  local profile="$1"
  [ "$DRY_RUN" -eq 1 ] && { printf '+ %s\n' "scripts/ollama_tools.py gpu-truth"; return 0; }
  if [ -n "$EXTERNAL_OLLAMA" ]; then
    "$(python_bin)" scripts/ollama_tools.py gpu-truth --url "${EXTERNAL_OLLAMA/host.docker.internal/127.0.0.1}" || true
  elif [ "$profile" = gpu ]; then
    "$(python_bin)" scripts/ollama_tools.py gpu-truth --compose ollama-gpu || true
  fi
}

# ---------------------------------------------------------------------------------------- local
cmd_local() {
  local tier="$1"
  load_env
  export DEPLOYMENT_TIER="$tier"
  set_env DEPLOYMENT_TIER "$tier"
  preflight local "$tier"
  if [ "$DRY_RUN" -eq 0 ]; then
    [ -x .venv/bin/gunicorn ] || ensure_venv .venv
    mkdir -p "$RUN_DIR"
    RUN_DIR="$(cd "$RUN_DIR" && pwd)"
    [ -f "$RUN_DIR/gateway.pid" ] && kill -0 "$(cat "$RUN_DIR/gateway.pid")" 2>/dev/null \
      && die "local mode is already running (./deploy-all.sh stop first)"
  fi
  if [ -z "${REDIS_URL:-}" ]; then
    if command -v redis-server >/dev/null 2>&1; then
      local port="${LOCAL_REDIS_PORT:-6380}"
      info "starting a private redis-server on 127.0.0.1:$port"
      # A restored dump.rdb without an AOF: load it with AOF off, then turn AOF on (which writes it from the
      # loaded data); with AOF on from the start Redis would ignore the dump and begin empty.
      local aof=yes
      [ -f "$RUN_DIR/dump.rdb" ] && [ ! -d "$RUN_DIR/appendonlydir" ] && aof=no
      # The password goes in a private config file, never on the command line (ps shows arguments to all).
      [ "$DRY_RUN" -eq 1 ] || (umask 077 && printf 'requirepass "%s"\n' "${REDIS_PASSWORD:-}" >"$RUN_DIR/redis.conf")
      start_bg redis redis-server "$RUN_DIR/redis.conf" --bind 127.0.0.1 --port "$port" --dir "$RUN_DIR" \
        --appendonly "$aof" --appendfsync everysec
      if [ "$aof" = no ] && [ "$DRY_RUN" -eq 0 ]; then
        local tries=0
        until REDISCLI_AUTH="${REDIS_PASSWORD:-}" redis-cli -p "$port" ping >/dev/null 2>&1; do
          tries=$((tries + 1)); [ "$tries" -ge 50 ] && die "redis-server did not start (see $RUN_DIR/redis.log)"
          sleep 0.1
        done
        REDISCLI_AUTH="${REDIS_PASSWORD:-}" redis-cli -p "$port" config set appendonly yes >/dev/null
      fi
      export REDIS_URL="redis://127.0.0.1:$port/0"
      # for ./deploy-all.sh backup --local (password included; the run dir is private)
      [ "$DRY_RUN" -eq 1 ] || (umask 077 && echo "redis://default:${REDIS_PASSWORD:-}@127.0.0.1:$port/0" >"$RUN_DIR/redis.url")
    else
      warn "redis-server not installed: state is per process, so one worker only (apt-get install redis-server)"
      export GATEWAY_WORKERS=1
    fi
  fi
  # The edge (configs/caddy/Caddyfile) takes the public port and hands gunicorn, on loopback only, whole
  # requests: slow clients then cost Caddy a goroutine each instead of a gunicorn thread.
  # Local mode answers this machine alone unless LOCAL_BIND says otherwise (0.0.0.0: every interface).
  local bind="${LOCAL_BIND:-127.0.0.1}"
  local inside=(env GATEWAY_HOST="$bind")
  # batch files and state: in the run dir, beside Redis's data (./deploy-all.sh backup --local keeps both)
  export BATCH_DIR="${BATCH_DIR:-$RUN_DIR/batches}"
  if command -v caddy >/dev/null 2>&1; then
    local internal="${GATEWAY_INTERNAL_PORT:-8081}"
    info "starting the edge (Caddy) on $bind:${GATEWAY_PORT:-8080}; the gateway on 127.0.0.1:$internal"
    mkdir -p "$RUN_DIR/caddy"
    start_bg edge env EDGE_ADDRESS=":${GATEWAY_PORT:-8080}" EDGE_BIND="$bind" \
      EDGE_UPSTREAM="127.0.0.1:$internal" MAX_BODY_BYTES="${MAX_BODY_BYTES:-8388608}" \
      BATCH_MAX_FILE_BYTES="${BATCH_MAX_FILE_BYTES:-52428800}" \
      XDG_DATA_HOME="$RUN_DIR/caddy" XDG_CONFIG_HOME="$RUN_DIR/caddy" \
      caddy run --adapter caddyfile --config configs/caddy/Caddyfile
    inside=(env GATEWAY_HOST=127.0.0.1 GATEWAY_PORT="$internal" TRUSTED_PROXIES=127.0.0.1/32)
  else
    warn "caddy is not installed: gunicorn faces clients itself, and slow clients can hold all its threads (apt-get install caddy)"
  fi
  info "starting the gateway (tier $tier, Ollama at ${OLLAMA_URL:-http://localhost:11434})"
  start_bg gateway "${inside[@]}" .venv/bin/gunicorn -c gateway/gunicorn.conf.py "gateway:create_app()"
  wait_healthy "$(gateway_url)" || die "see $RUN_DIR/gateway.log"
  info "logs: $RUN_DIR/gateway.log; stop with ./deploy-all.sh stop"
  log_deploy "local" "$tier"
  smoke_test local
}

# Record the deployment in Taskwarrior when asked to (TASKWARRIOR_LOG_DEPLOYS=true; examples/tw-helper.sh):
# your task list is yours, nothing is written there unasked.
log_deploy() {
  [ "${TASKWARRIOR_LOG_DEPLOYS:-false}" = true ] || return 0
  command -v task >/dev/null 2>&1 || { warn "TASKWARRIOR_LOG_DEPLOYS=true but task is not installed"; return 0; }
  [ "$DRY_RUN" -eq 1 ] && { printf '+ tw_log_deploy %s %s\n' "$1" "$2"; return 0; }
  # shellcheck source=examples/tw-helper.sh
  . examples/tw-helper.sh
  tw_log_deploy "$1" "$2" || warn "could not log the deployment in Taskwarrior"
}

start_bg() {
  local name="$1"
  shift
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '+ %s > %s/%s.log 2>&1 &\n' "$*" "$RUN_DIR" "$name"
    return 0
  fi
  nohup "$@" >"$RUN_DIR/$name.log" 2>&1 &
  echo $! >"$RUN_DIR/$name.pid"
}

# Local mode is running (./deploy-all.sh local): logs, down and backup act on it.
local_running() {
  [ -f "$RUN_DIR/gateway.pid" ] && kill -0 "$(cat "$RUN_DIR/gateway.pid")" 2>/dev/null
}

cmd_logs() {
  local service="${1:-}"
  if local_running; then
    case "${service:-gateway}" in
      gateway | edge | redis | prometheus | grafana) ;;
      *) die "local mode runs gateway, edge and redis (and prometheus, grafana): ./deploy-all.sh logs gateway|edge|redis" ;;
    esac
    if [ "$PRETTY" -eq 1 ]; then
      [ "$DRY_RUN" -eq 1 ] && { printf '+ tail -n 100 -f %s | logview\n' "$RUN_DIR/${service:-gateway}.log"; return; }
      tail -n 100 -f "$RUN_DIR/${service:-gateway}.log" | "$(python_bin)" scripts/logview.py
    else
      run tail -n 100 -f "$RUN_DIR/${service:-gateway}.log"
    fi
    return
  fi
  if [ "$PRETTY" -eq 1 ]; then
    [ "$DRY_RUN" -eq 1 ] && { printf '+ docker compose logs -f --no-log-prefix %s | logview\n' "${service:-api-gateway}"; return; }
    docker compose logs -f --tail=100 --no-log-prefix "${service:-api-gateway}" | "$(python_bin)" scripts/logview.py
    return
  fi
  run docker compose logs -f --tail=100 ${service:+"$service"}
}

# The configuration (configs/models.yaml, configs/router/) without dropping a request: checked first (a
# broken file would stop new workers from booting), then gunicorn's graceful reload (HUP): new workers
# start with it, the old ones finish what they are answering (up to 30 s, graceful_timeout) and exit.
# .env is the processes' environment, read at start: a change there needs a restart.
cmd_reload() {
  if local_running; then
    run "$(python_bin)" -m gateway check --env-file "" || die "the configuration has errors (above): nothing reloaded"
    local master old pid waited=0
    master="$(cat "$RUN_DIR/gateway.pid")"
    old="$(pgrep -P "$master" || true)"
    run kill -HUP "$master"
    # Live once the old workers have finished their requests and gone (graceful_timeout, 30 s, at most):
    # return before that and the next request may still meet the old configuration.
    if [ "$DRY_RUN" -eq 0 ]; then
      for pid in $old; do
        while kill -0 "$pid" 2>/dev/null; do
          waited=$((waited + 1)); [ "$waited" -ge 700 ] && die "the old workers are still running after 35 s"
          sleep 0.05
        done
      done
    fi
  else
    run docker compose exec -T api-gateway python -m gateway check --env-file "" \
      || die "the configuration has errors (above): nothing reloaded"
    run docker compose kill -s HUP api-gateway
  fi
  info "reloading: new workers read the configuration, the old ones finish their requests"
  [ "$DRY_RUN" -eq 1 ] || wait_healthy "$(gateway_url)" || die "the gateway did not come back (./deploy-all.sh logs)"
}

# Local mode's dashboards: the native Prometheus (and Grafana, when installed) on loopback, scraping the local
# gateway with the stack's own configuration and alert rules (scripts/local_dashboards.py).
cmd_dashboards() {
  local_running || [ "$DRY_RUN" -eq 1 ] || die "dashboards is for local mode (./deploy-all.sh local first); the docker stack runs Grafana on GRAFANA_PORT"
  command -v prometheus >/dev/null 2>&1 || die "prometheus is not installed (apt-get install prometheus)"
  local prom_port="${PROMETHEUS_PORT:-9090}" config
  config="$("$(python_bin)" scripts/local_dashboards.py prometheus "$RUN_DIR" "127.0.0.1:${GATEWAY_PORT:-8080}" \
    "${PROMETHEUS_SCRAPE_INTERVAL:-15s}")" || die "could not write the Prometheus configuration"
  info "starting Prometheus on 127.0.0.1:$prom_port (alert rules of configs/prometheus)"
  start_bg prometheus prometheus --config.file="$config" --storage.tsdb.path="$RUN_DIR/prometheus/data" \
    --web.listen-address="127.0.0.1:$prom_port"
  local grafana
  grafana="$(command -v grafana-server || command -v grafana || true)"
  if [ -n "$grafana" ]; then
    local provisioning home="${GRAFANA_HOME:-/usr/share/grafana}"
    provisioning="$("$(python_bin)" scripts/local_dashboards.py grafana "$RUN_DIR" "http://127.0.0.1:$prom_port")"
    info "starting Grafana on 127.0.0.1:${GRAFANA_PORT:-3000} (admin, GRAFANA_ADMIN_PASSWORD from .env)"
    start_bg grafana env GF_PATHS_PROVISIONING="$provisioning" GF_PATHS_DATA="$RUN_DIR/grafana/data" \
      GF_SERVER_HTTP_ADDR=127.0.0.1 GF_SERVER_HTTP_PORT="${GRAFANA_PORT:-3000}" \
      GF_SECURITY_ADMIN_PASSWORD="${GRAFANA_ADMIN_PASSWORD:-}" "$grafana" --homepath "$home"
  else
    info "Grafana is not installed: the dashboards' queries run in Prometheus' own UI (Graph), or install grafana"
  fi
  info "Prometheus: http://127.0.0.1:$prom_port; stop with ./deploy-all.sh stop"
}

cmd_stop() {
  local pidfile pid name
  for pidfile in "$RUN_DIR"/grafana.pid "$RUN_DIR"/prometheus.pid "$RUN_DIR"/edge.pid "$RUN_DIR"/gateway.pid \
      "$RUN_DIR"/redis.pid; do
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    name="$(basename "$pidfile" .pid)"
    if kill -0 "$pid" 2>/dev/null; then
      info "stopping $name (pid $pid)"
      run kill -TERM "$pid"
      for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -0 "$pid" 2>/dev/null && run kill -KILL "$pid"
    fi
    run rm -f "$pidfile"
  done
}

cmd_status() {
  if [ "$DRY_RUN" -eq 1 ] || { command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; }; then
    run docker compose ps --format 'table {{.Service}}\t{{.Status}}'
  fi
  local pidfile
  for pidfile in "$RUN_DIR"/*.pid; do
    [ -f "$pidfile" ] || continue
    if kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      info "local $(basename "$pidfile" .pid): running (pid $(cat "$pidfile"))"
    else
      warn "local $(basename "$pidfile" .pid): not running (stale pid file)"
    fi
  done
  load_env
  # A line per part, coloured on a terminal (--json: the raw answer). Exit 3 when the gateway does not answer,
  # 1 when no backend can serve (as `systemctl status` says a unit is down): scripts can test it.
  local rc=0
  python3 scripts/readiness.py "$(gateway_url)" ${JSON:+--json} || rc=$?
  [ "$rc" -eq 3 ] && warn "the gateway at $(gateway_url) does not answer"
  [ "$DRY_RUN" -eq 1 ] && return 0
  return "$rc"
}

cmd_backup() {
  local what="$1" target="$2" mode=docker flags=()
  [ "$DRY_RUN" -eq 1 ] && flags+=(--dry-run)
  if [ "$LOCAL" -eq 1 ]; then
    mode=local
    flags+=(--run-dir "$RUN_DIR")
    [ -f "$RUN_DIR/redis.url" ] && flags+=(--redis-url "$(cat "$RUN_DIR/redis.url")")
  fi
  if [ "$what" = backup ]; then
    "$(python_bin)" scripts/backup.py backup --mode "$mode" --out "${target:-backups}" "${flags[@]}"
  else
    [ -n "$target" ] || die "usage: ./deploy-all.sh restore FILE [--local]"
    "$(python_bin)" scripts/backup.py restore "$target" --mode "$mode" "${flags[@]}"
  fi
}

cmd_update() {
  local tier="$1" profile=()
  load_env
  info "backing up first"
  cmd_backup backup ""
  export DEPLOYMENT_TIER="$tier"
  tier_env "$tier"
  set_env DEPLOYMENT_TIER "$tier"
  # The same Ollama as the last deploy: an external one (no Ollama container), or the profile's.
  [ -n "$EXTERNAL_OLLAMA" ] && { export STACK_OLLAMA_URL="$EXTERNAL_OLLAMA"; set_env STACK_OLLAMA_URL "$EXTERNAL_OLLAMA"; }
  [ -n "${STACK_OLLAMA_URL:-}" ] || profile=(--profile "$(pick_profile)")
  run docker compose "${profile[@]}" pull
  run docker compose "${profile[@]}" up -d --build --remove-orphans
  if ! wait_healthy "$(gateway_url)"; then
    warn "the update did not become healthy. To roll back: set the previous *_IMAGE_TAG values in .env, then"
    warn "./deploy-all.sh down && ./deploy-all.sh restore backups/<the archive above> && ./deploy-all.sh docker $tier"
    return 1
  fi
  info "updated; the backup taken before is in backups/"
}

cmd_down() {
  if [ "$VOLUMES" -eq 0 ]; then
    run docker compose down
    return
  fi
  if [ "$YES" -eq 0 ] && [ "$DRY_RUN" -eq 0 ]; then
    local answer
    warn "--volumes deletes ALL data: pulled models, spend and budgets, dashboards, n8n workflows and credentials"
    read -r -p "Type 'delete' to go on: " answer || true
    [ "$answer" = "delete" ] || die "cancelled; nothing deleted"
  fi
  run docker compose down --volumes
}

# Right after ./install.sh the user is in the docker group, but this login session is not: run once more
# through `sg docker` instead of failing with "permission denied" until the next login.
docker_group_or_reexec() {
  [ "$DRY_RUN" -eq 0 ] && [ -z "${DEPLOY_SG:-}" ] && [ "$(id -u)" -ne 0 ] || return 0
  command -v docker >/dev/null 2>&1 && ! docker info >/dev/null 2>&1 || return 0
  id -nG | tr ' ' '\n' | grep -qx docker && return 0  # in the group already: another problem (doctor says)
  getent group docker | cut -d: -f4 | tr ',' '\n' | grep -qx "$(id -un)" || return 0
  info "using the docker group this session does not have yet (sg docker)"
  DEPLOY_SG=1 exec sg docker -c "$(printf '%q ' "$0" "$@")"
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")"
  # shellcheck source=scripts/lib.sh
  . scripts/lib.sh
  local args=() original=("$@")
  while [ $# -gt 0 ]; do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
      --gpu) PROFILE=gpu ;;
      --cpu) PROFILE=cpu ;;
      --skip-doctor) SKIP_DOCTOR=1 ;;
      --volumes) VOLUMES=1 ;;
      --yes | -y) YES=1 ;;
      --local) LOCAL=1 ;;
      --json) JSON=1 ;;
      --pretty) PRETTY=1 ;;
      --mac) EXTERNAL_OLLAMA="http://host.docker.internal:11434" ;;
      --external-ollama) shift; EXTERNAL_OLLAMA="${1:?--external-ollama needs a URL}" ;;
      --pull) PULL=1 ;;
      --destroy) DESTROY=1 ;;
      --plan-only) PLAN_ONLY=1 ;;
      --context) shift; KUBE_CONTEXT="${1:?--context needs a name}" ;;
      -h | --help) usage; exit 0 ;;
      -*) usage >&2; die "unknown option: $1" ;;
      *) args+=("$1") ;;
    esac
    shift
  done
  [ ${#args[@]} -ge 1 ] || { usage >&2; exit 2; }
  docker_group_or_reexec "${original[@]}"
  load_env  # the tier of the last deploy (DEPLOYMENT_TIER in .env) when none is given
  local command="${args[0]}" tier="${args[1]:-${DEPLOYMENT_TIER:-2}}"
  case "$command" in
    docker) check_tier "$tier"; cmd_docker "$tier" ;;
    doctor)
      check_tier "$tier"
      local_or_docker=docker
      [ "$LOCAL" -eq 1 ] && local_or_docker=local
      "$(python_bin)" scripts/doctor.py --mode "$local_or_docker" --tier "$tier" ;;
    local) check_tier "$tier"; cmd_local "$tier" ;;
    stop) cmd_stop ;;
    dashboards) cmd_dashboards ;;
    reload) cmd_reload ;;
    key)
      [ -n "${GATEWAY_API_KEYS:-}" ] || die "no GATEWAY_API_KEYS in .env or the environment (./install.sh generates them)"
      printf '%s\n' "${GATEWAY_API_KEYS%%,*}" ;;
    status | ps) cmd_status ;;
    logs) cmd_logs "${args[1]:-}" ;;
    down)
      if local_running; then
        info "local mode is running: stopping it (down is for the docker stack; local mode's is stop)"
        cmd_stop
      else
        cmd_down
      fi ;;
    backup | restore)
      if [ "$LOCAL" -eq 0 ] && local_running; then
        [ "$command" = restore ] && die "local mode is running: ./deploy-all.sh stop, then restore FILE --local"
        info "local mode is running: backing it up (--local)"
        LOCAL=1
      fi
      cmd_backup "$command" "${args[1]:-}" ;;
    update) check_tier "$tier"; cmd_update "$tier" ;;
    aws | gcp)
      check_tier "$tier"
      local cloud_flags=()
      [ "$YES" -eq 1 ] && cloud_flags+=(--yes)
      [ "$DRY_RUN" -eq 1 ] && cloud_flags+=(--dry-run)
      [ "$DESTROY" -eq 1 ] && cloud_flags+=(--destroy)
      [ "$PLAN_ONLY" -eq 1 ] && cloud_flags+=(--plan-only)
      exec scripts/deploy_cloud.sh "$command" "$tier" "${cloud_flags[@]}" ;;
    k8s)
      check_tier "$tier"
      local k8s_flags=()
      [ -n "$KUBE_CONTEXT" ] && k8s_flags+=(--context "$KUBE_CONTEXT")
      [ "$DRY_RUN" -eq 1 ] && k8s_flags+=(--dry-run)
      exec scripts/deploy_k8s.sh "$tier" "${PROFILE:-cpu}" "${k8s_flags[@]}" ;;
    *) usage >&2; die "unknown command: $command" ;;
  esac
}

main "$@"
