output "public_ip" {
  description = "The VM's static external IP."
  value       = google_compute_address.stack.address
}

output "ssh_command" {
  description = "SSH into the VM (OS Login: gcloud compute ssh, through IAP when allowed_ssh_cidrs is IAP's range; metadata key: ssh ubuntu@IP)."
  value       = var.ssh_public_key == "" ? "gcloud compute ssh ${var.name} --zone ${local.zone} --project ${var.project_id}${local.iap}" : "ssh ubuntu@${google_compute_address.stack.address}"
}

output "gateway_url" {
  description = "Base URL of the gateway API (native /api/v1, OpenAI-compatible /v1)."
  value       = var.tls_domain != "" ? "https://${var.tls_domain}" : "http://${google_compute_address.stack.address}:${var.gateway_port}"
}

output "gateway_api_key_command" {
  description = "Print the gateway API keys the VM generated (or read from Secret Manager)."
  value       = "gcloud compute ssh ${var.name} --zone ${local.zone} --project ${var.project_id}${local.iap} -- sudo grep ^GATEWAY_API_KEYS= /opt/hybrid-ai-stack/.env"
}

output "admin_tunnel_command" {
  description = "Reach Grafana (localhost:3000), n8n (localhost:5678) and Prometheus (localhost:9090) through SSH."
  value       = "gcloud compute ssh ${var.name} --zone ${local.zone} --project ${var.project_id}${local.iap} -- -N -L 3000:127.0.0.1:3000 -L 5678:127.0.0.1:5678 -L 9090:127.0.0.1:9090"
}

output "admin_urls" {
  description = "Admin UIs on the public IP, only when admin_cidrs opens them; otherwise use admin_tunnel_command."
  value       = length(var.admin_cidrs) > 0 ? { for name, port in { grafana = 3000, n8n = 5678, prometheus = 9090 } : name => "http://${google_compute_address.stack.address}:${port}" } : {}
}

output "tier" {
  description = "Deployment tier."
  value       = var.tier
}

output "instance_type" {
  description = "Machine type of the tier (plus an NVIDIA T4 on tier 4)."
  value       = local.tier.gpu != "" ? "${local.machine_type} + ${local.tier.gpu}" : local.machine_type
}

output "disk_gb" {
  description = "Boot disk size (GB, pd-balanced, encrypted)."
  value       = local.disk_gb
}

output "monthly_cost_estimate_usd" {
  description = "On-demand estimate for the tier's default machine in us-central1 (machine + GPU + disk + IPv4), USD per month; see terraform/README.md."
  value       = local.tier.monthly_usd
}

output "bootstrap_log_command" {
  description = "Follow the first-boot log."
  value       = "gcloud compute ssh ${var.name} --zone ${local.zone} --project ${var.project_id}${local.iap} -- sudo tail -f /var/log/hybrid-ai-stack-bootstrap.log"
}
