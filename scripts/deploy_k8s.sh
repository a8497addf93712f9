#!/usr/bin/env bash
# Put the stack on a Kubernetes cluster (deploy/kubernetes: a Kustomize base, cpu and gpu overlays);
# deploy-all.sh k8s calls it after loading .env.
#
#   scripts/deploy_k8s.sh TIER cpu|gpu [--context NAME] [--dry-run]
#
# The Secret hybrid-ai-secrets is made here from .env (GATEWAY_API_KEYS, GATEWAY_ADMIN_KEYS, METRICS_TOKEN,
# REDIS_PASSWORD, ANTHROPIC_API_KEY when set) and applied; it is never written to the repo or printed.
# GATEWAY_IMAGE names the gateway image your cluster pulls (build and push gateway/Dockerfile first).
set -euo pipefail

DRY_RUN="${DRY_RUN:-0}"
NAMESPACE=hybrid-ai-stack
SECRET_KEYS=(GATEWAY_API_KEYS GATEWAY_ADMIN_KEYS METRICS_TOKEN REDIS_PASSWORD)

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  # shellcheck source=scripts/lib.sh
  . scripts/lib.sh
  local tier="$1" profile="$2" context=""
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --context) shift; context="${1:?--context needs a kubeconfig context name}" ;;
      --dry-run) DRY_RUN=1 ;;
      *) die "unknown option: $1" ;;
    esac
    shift
  done
  need_cmd kubectl "Kustomize is built in: https://kubernetes.io/docs/tasks/tools/"
  local kube=(kubectl) name
  [ -n "$context" ] && kube+=(--context "$context")
  for name in "${SECRET_KEYS[@]}"; do
    [ -n "${!name:-}" ] || die "$name is empty in .env: ./install.sh --env-only fills it"
  done

  local rendered image="${GATEWAY_IMAGE:-hybrid-ai-gateway:0.1.0}"
  WORK="$(umask 077 && mktemp -d)"  # global: the EXIT trap runs after main's locals are gone
  trap 'rm -rf "$WORK"' EXIT
  local work="$WORK"
  rendered="$work/stack.yaml"
  # models.yaml comes from configs/, outside deploy/kubernetes: hence the load restrictor.
  kubectl kustomize --load-restrictor=LoadRestrictionsNone "deploy/kubernetes/overlays/$profile" \
    | sed "s#image: hybrid-ai-gateway:0.1.0#image: $image#" >"$rendered"
  info "rendered deploy/kubernetes/overlays/$profile: $(grep -c '^kind:' "$rendered") objects, gateway image $image"

  # The Secret: only its keys' names are ever shown.
  local env_file="$work/secrets.env" keys=("${SECRET_KEYS[@]}")
  [ -n "${ANTHROPIC_API_KEY:-}" ] && keys+=(ANTHROPIC_API_KEY)
  for name in "${keys[@]}"; do printf '%s=%s\n' "$name" "${!name}"; done >"$env_file"
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '+ %s apply -f %s\n' "${kube[*]}" "deploy/kubernetes/overlays/$profile (rendered)"
    printf '+ %s -n %s create secret generic hybrid-ai-secrets --from-env-file=(%s) | apply\n' \
      "${kube[*]}" "$NAMESPACE" "${keys[*]}"
  else
    "${kube[@]}" apply -f "$rendered"  # the Namespace comes first in Kustomize's output
    "${kube[@]}" -n "$NAMESPACE" create secret generic hybrid-ai-secrets --from-env-file="$env_file" \
      --dry-run=client -o yaml | "${kube[@]}" apply -f -
  fi
  run "${kube[@]}" -n "$NAMESPACE" rollout status statefulset/redis --timeout=300s
  run "${kube[@]}" -n "$NAMESPACE" rollout status statefulset/ollama --timeout=600s
  # The tier's local models onto Ollama's volume (kept across restarts; a pulled model is not fetched again).
  local model
  for model in $("$(python_bin)" scripts/tiers.py models "$tier"); do
    run "${kube[@]}" -n "$NAMESPACE" exec statefulset/ollama -- ollama pull "$model"
  done
  run "${kube[@]}" -n "$NAMESPACE" rollout restart deployment/gateway  # a new Secret or models.yaml
  run "${kube[@]}" -n "$NAMESPACE" rollout status deployment/gateway --timeout=300s
  info "the gateway: kubectl -n $NAMESPACE port-forward service/gateway 8080 (or an Ingress of yours to it)"
}

python_bin() { if [ -x .venv/bin/python ]; then echo .venv/bin/python; else echo python3; fi; }

main "$@"
