# Taskwarrior helpers for the Hybrid AI Stack. Source it:  . examples/tw-helper.sh
#   tw_routing_stats   requests by tier and backend, local share, cache (from /api/v1/stats)
#   tw_cost_report     spend this month, savings vs cloud-only, budget, newest decisions by model
#   tw_log_deploy WHAT [TIER]   record a deployment as a completed task (project hybrid_ai.deploy)
#   tw_export [--since 24h]     routing decisions into Taskwarrior (examples/tw_export.py)
# GATEWAY_URL (default http://localhost:8080) and GATEWAY_API_KEY come from the environment.
# shellcheck shell=bash

_tw_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

_tw_python() {
  if [ -x "$_tw_dir/../.venv/bin/python" ]; then echo "$_tw_dir/../.venv/bin/python"; else echo python3; fi
}

tw_routing_stats() {
  "$(_tw_python)" "$_tw_dir/tw_report.py" routing "$@"
}

tw_cost_report() {
  "$(_tw_python)" "$_tw_dir/tw_report.py" cost "$@"
}

tw_log_deploy() {
  local what="${1:?usage: tw_log_deploy WHAT [TIER]}" tier="${2:-}"
  command -v task >/dev/null 2>&1 || { echo "taskwarrior not installed: deployment not logged" >&2; return 0; }
  task rc.confirmation=off rc.verbose=nothing log project:hybrid_ai.deploy +deploy ${tier:++tier$tier} \
    "deployed $what${tier:+ tier $tier} from $(git -C "$_tw_dir/.." rev-parse --short HEAD 2>/dev/null || echo unknown)" </dev/null
}

tw_export() {
  "$(_tw_python)" "$_tw_dir/tw_export.py" "$@"
}
