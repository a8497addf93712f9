# The stack on GCP tier 2 in europe-west4, API open to one office range, SSH through IAP.
#   terraform init && terraform apply
module "hybrid_ai_stack" {
  source = "../.."

  project_id        = "my-ai-project"
  region            = "europe-west4"
  tier              = 2
  allowed_ssh_cidrs = ["35.235.240.0/20"] # IAP TCP forwarding: gcloud compute ssh --tunnel-through-iap
  allowed_api_cidrs = ["203.0.113.0/24"]
  stack_repo_url    = "https://github.com/example/hybrid-ai-stack.git"
  stack_ref         = "v1.0.0"

  # Optional: the Anthropic key from Secret Manager, a monthly cloud budget.
  # anthropic_api_key_secret = "anthropic-api-key"
  budget_monthly_usd = 50
}

output "gateway_url" {
  value = module.hybrid_ai_stack.gateway_url
}

output "ssh_command" {
  value = module.hybrid_ai_stack.ssh_command
}

output "admin_tunnel_command" {
  value = module.hybrid_ai_stack.admin_tunnel_command
}
