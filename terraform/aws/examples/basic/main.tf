# The stack on AWS tier 2 in eu-west-1, API and SSH open to one office range only.
#   terraform init && terraform apply
module "hybrid_ai_stack" {
  source = "../.."

  region            = "eu-west-1"
  tier              = 2
  allowed_ssh_cidrs = ["203.0.113.7/32"]
  allowed_api_cidrs = ["203.0.113.0/24"]
  ssh_public_key    = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnlyReplaceWithYours user@laptop"
  stack_repo_url    = "https://github.com/example/hybrid-ai-stack.git"
  stack_ref         = "v1.0.0"

  # Optional: the Anthropic key from Secrets Manager, a monthly cloud budget.
  # anthropic_api_key_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:anthropic-key-AbCdEf"
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
