#!/usr/bin/env bash
# Put the stack on a cloud VM with Terraform (terraform/aws or terraform/gcp); deploy-all.sh aws|gcp calls it.
#
#   scripts/deploy_cloud.sh aws|gcp TIER [--yes] [--destroy] [--plan-only] [--dry-run]
#
# Variables come from terraform/CLOUD/terraform.tfvars (copy terraform.tfvars.example) or TF_VAR_* in the
# environment; the tier from the command line wins. stack_repo_url and stack_ref default to this checkout's
# https origin and commit (push it first). Health is awaited over HTTP for CLOUD_HEALTH_TIMEOUT seconds (1200).
set -euo pipefail

YES=0
DESTROY=0
PLAN_ONLY=0
DRY_RUN="${DRY_RUN:-0}"

# check_credentials CLOUD: the provider's usual credential sources, tried without changing anything.
check_credentials() {
  case "$1" in
    aws)
      if [ -n "${AWS_ACCESS_KEY_ID:-}" ] || [ -n "${AWS_PROFILE:-}" ] || [ -f "${AWS_SHARED_CREDENTIALS_FILE:-$HOME/.aws/credentials}" ]; then
        return 0
      fi
      command -v aws >/dev/null 2>&1 && aws sts get-caller-identity >/dev/null 2>&1 && return 0
      die "no AWS credentials: set AWS_PROFILE (aws configure / aws sso login) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" ;;
    gcp)
      if [ -n "${GOOGLE_APPLICATION_CREDENTIALS:-}" ] || [ -n "${GOOGLE_OAUTH_ACCESS_TOKEN:-}" ] \
          || [ -f "$HOME/.config/gcloud/application_default_credentials.json" ]; then
        return 0
      fi
      die "no GCP credentials: run 'gcloud auth application-default login' or set GOOGLE_APPLICATION_CREDENTIALS" ;;
  esac
}

# The variables with no default must come from somewhere before terraform asks for them.
check_variables() {
  local dir="$1" cloud="$2" name
  local required=(allowed_ssh_cidrs allowed_api_cidrs region)
  if [ "$cloud" = aws ]; then required+=(ssh_public_key); else required+=(project_id); fi
  for name in "${required[@]}"; do
    local env_name="TF_VAR_$name"
    [ -n "${!env_name:-}" ] && continue
    [ -f "$dir/terraform.tfvars" ] && grep -Eq "^[[:space:]]*${name}[[:space:]]*=" "$dir/terraform.tfvars" && continue
    die "$name is not set: cp $dir/terraform.tfvars.example $dir/terraform.tfvars and edit it (or export $env_name)"
  done
}

# stack_repo_url / stack_ref default to this checkout (an https origin, the current commit).
default_stack_source() {
  local origin
  if [ -z "${TF_VAR_stack_repo_url:-}" ] && origin="$(git remote get-url origin 2>/dev/null)"; then
    case "$origin" in https://*) export TF_VAR_stack_repo_url="$origin" ;; esac
  fi
  if [ -z "${TF_VAR_stack_ref:-}" ] && git rev-parse --verify -q HEAD >/dev/null 2>&1; then
    TF_VAR_stack_ref="$(git rev-parse HEAD)"
    export TF_VAR_stack_ref
  fi
}

# plan_output NAME: a value the saved plan already knows (outputs that depend on no cloud attribute).
plan_output() {
  terraform -chdir="$1" show -json tfplan \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["planned_values"]["outputs"][sys.argv[1]]["value"])' "$2"
}

confirm() {
  [ "$YES" -eq 1 ] && return 0
  local answer
  read -r -p "$1 [y/N] " answer || true
  case "$answer" in y | Y | yes) return 0 ;; *) die "cancelled" ;; esac
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  # shellcheck source=scripts/lib.sh
  . scripts/lib.sh
  local args=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --yes | -y) YES=1 ;;
      --destroy) DESTROY=1 ;;
      --plan-only) PLAN_ONLY=1 ;;
      --dry-run) DRY_RUN=1 ;;
      -*) die "unknown option: $1" ;;
      *) args+=("$1") ;;
    esac
    shift
  done
  CLOUD="${args[0]:-}"
  local tier="${args[1]:-}" dir
  case "$CLOUD" in aws | gcp) ;; *) die "cloud must be aws or gcp (got '$CLOUD')" ;; esac
  case "$tier" in 1 | 2 | 3 | 4) ;; *) die "tier must be 1, 2, 3 or 4 (got '$tier')" ;; esac
  dir="terraform/$CLOUD"
  export DRY_RUN
  if [ "$DRY_RUN" -eq 0 ]; then
    need_cmd terraform "https://developer.hashicorp.com/terraform/install"
    check_credentials "$CLOUD"
    check_variables "$dir" "$CLOUD"
  fi
  default_stack_source
  info "stack for the VM: ${TF_VAR_stack_repo_url:-stack_repo_url from $dir/terraform.tfvars} at ${TF_VAR_stack_ref:-main}"

  run terraform -chdir="$dir" init -input=false
  if [ "$DESTROY" -eq 1 ]; then
    [ "$DRY_RUN" -eq 1 ] || confirm "Destroy the $CLOUD VM, its disk (models, spend, dashboards) and its network?"
    # deletion_protection (on by default) makes the cloud refuse; lift it on the VM alone, then destroy.
    local vm=aws_instance.stack
    [ "$CLOUD" = gcp ] && vm=google_compute_instance.stack
    run terraform -chdir="$dir" apply -input=false -auto-approve -var "tier=$tier" -var deletion_protection=false \
      "-target=$vm"
    run terraform -chdir="$dir" destroy -input=false -auto-approve -var "tier=$tier" -var deletion_protection=false
    return 0
  fi
  run terraform -chdir="$dir" plan -input=false -var "tier=$tier" -out=tfplan
  [ "$PLAN_ONLY" -eq 1 ] && { info "plan only: saved as $dir/tfplan, nothing applied"; return 0; }
  if [ "$DRY_RUN" -eq 0 ]; then
    info "tier $tier on $CLOUD: $(plan_output "$dir" instance_type), about \$$(plan_output "$dir" monthly_cost_estimate_usd)/month on demand (terraform/README.md)"
    confirm "Apply this plan?"
  fi
  run terraform -chdir="$dir" apply -input=false tfplan
  local url="http://VM:8080"
  [ "$DRY_RUN" -eq 1 ] || url="$(terraform -chdir="$dir" output -raw gateway_url)"
  [ "$DRY_RUN" -eq 1 ] || info "first boot installs Docker and pulls the models: 5-20 min"
  wait_healthy "$url" "${CLOUD_HEALTH_TIMEOUT:-1200}" \
    || die "see the boot log: $(terraform -chdir="$dir" output -raw bootstrap_log_command 2>/dev/null)"
  run terraform -chdir="$dir" output
}

main "$@"
