output "public_ip" {
  description = "The VM's public (Elastic) IP."
  value       = aws_eip.stack.public_ip
}

output "ssh_command" {
  description = "SSH into the VM."
  value       = "ssh ubuntu@${aws_eip.stack.public_ip}"
}

output "gateway_url" {
  description = "Base URL of the gateway API (native /api/v1, OpenAI-compatible /v1)."
  value       = var.tls_domain != "" ? "https://${var.tls_domain}" : "http://${aws_eip.stack.public_ip}:${var.gateway_port}"
}

output "gateway_api_key_command" {
  description = "Print the gateway API keys the VM generated (or read from Secrets Manager)."
  value       = "ssh ubuntu@${aws_eip.stack.public_ip} sudo grep ^GATEWAY_API_KEYS= /opt/hybrid-ai-stack/.env"
}

output "admin_tunnel_command" {
  description = "Reach Grafana (localhost:3000), n8n (localhost:5678) and Prometheus (localhost:9090) through SSH."
  value       = "ssh -N -L 3000:127.0.0.1:3000 -L 5678:127.0.0.1:5678 -L 9090:127.0.0.1:9090 ubuntu@${aws_eip.stack.public_ip}"
}

output "admin_urls" {
  description = "Admin UIs on the public IP, only when admin_cidrs opens them; otherwise use admin_tunnel_command."
  value       = length(var.admin_cidrs) > 0 ? { for name, port in local.admin_ports : name => "http://${aws_eip.stack.public_ip}:${port}" } : {}
}

output "tier" {
  description = "Deployment tier."
  value       = var.tier
}

output "instance_type" {
  description = "EC2 instance type of the tier."
  value       = local.instance_type
}

output "disk_gb" {
  description = "Root disk size (GB, encrypted gp3)."
  value       = local.disk_gb
}

output "monthly_cost_estimate_usd" {
  description = "On-demand estimate for the tier's default instance in us-east-1 (instance + disk + IPv4), USD per month; see terraform/README.md."
  value       = local.tier.monthly_usd
}

output "bootstrap_log_command" {
  description = "Follow the first-boot log."
  value       = "ssh ubuntu@${aws_eip.stack.public_ip} sudo tail -f /var/log/hybrid-ai-stack-bootstrap.log"
}
