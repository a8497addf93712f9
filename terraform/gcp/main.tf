provider "google" {
  project = var.project_id
  region  = var.region
}

locals {
  # Tier map: machine type, boot disk (GB), GPU, and the monthly on-demand estimate in us-central1 (USD,
  # machine + GPU + pd-balanced disk + external IPv4; list prices as of 2026-11-22, see
  # terraform/README.md). Override types with var.machine_types.
  tiers = {
    1 = { machine_type = "e2-small", disk_gb = 30, gpu = "", monthly_usd = 19 }
    2 = { machine_type = "e2-medium", disk_gb = 50, gpu = "", monthly_usd = 33 }
    3 = { machine_type = "e2-standard-4", disk_gb = 80, gpu = "", monthly_usd = 109 }
    4 = { machine_type = "n1-standard-4", disk_gb = 120, gpu = "nvidia-tesla-t4", monthly_usd = 410 }
  }
  tier         = local.tiers[var.tier]
  machine_type = lookup(var.machine_types, tostring(var.tier), local.tier.machine_type)
  disk_gb      = var.disk_gb > 0 ? var.disk_gb : local.tier.disk_gb
  zone         = var.zone != "" ? var.zone : "${var.region}-a"
  network      = var.create_network ? google_compute_network.stack[0].self_link : "default"
  subnetwork   = var.create_network ? google_compute_subnetwork.stack[0].self_link : null
  secret_ids   = compact([var.anthropic_api_key_secret, var.gateway_api_keys_secret])
  admin_ports  = ["3000", "5678", "9090"] # Grafana, n8n, Prometheus
  # With TLS, Caddy answers on 443 (and 80 for the ACME challenge); without, the gateway port itself.
  api_ports = var.tls_domain != "" ? ["80", "443"] : [tostring(var.gateway_port)]
  labels    = merge({ project = "hybrid-ai-stack", managed-by = "terraform" }, var.labels)

  user_data = templatefile("${path.module}/../cloud-init/bootstrap.sh.tftpl", {
    cloud               = "gcp"
    tier                = var.tier
    stack_dir           = "/opt/hybrid-ai-stack"
    stack_repo_url      = var.stack_repo_url
    stack_ref           = var.stack_ref
    stack_archive_url   = var.stack_archive_url
    gateway_port        = var.gateway_port
    admin_public        = length(var.admin_cidrs) > 0
    tls_domain          = var.tls_domain
    tls_email           = var.tls_email
    anthropic_secret    = var.anthropic_api_key_secret
    gateway_keys_secret = var.gateway_api_keys_secret
    budget_monthly_usd  = var.budget_monthly_usd
    gpu                 = local.tier.gpu != ""
  })
}

# The VM's own identity: no roles at all unless a secret is named, then read access to that secret only.
resource "google_service_account" "stack" {
  account_id   = "${var.name}-vm"
  display_name = "Hybrid AI Stack VM"
}

resource "google_secret_manager_secret_iam_member" "read" {
  for_each  = toset(local.secret_ids)
  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.stack.email}"
}

resource "google_compute_address" "stack" {
  name   = var.name
  region = var.region
}

resource "google_compute_instance" "stack" {
  #checkov:skip=CKV_GCP_38:customer-supplied keys (CSEK) cannot be used unattended; disks are encrypted with Google-managed keys, or CMEK via kms_key_self_link
  #checkov:skip=CKV_GCP_40:the VM serves the gateway API on its external IP; the firewall admits allowed_api_cidrs only
  #checkov:skip=CKV_GCP_39:Shielded VM secure boot is on for tiers 1-3; tier 4 turns it off because the NVIDIA DKMS module is unsigned (integrity monitoring and vTPM stay on)
  name                      = var.name
  machine_type              = local.machine_type
  zone                      = local.zone
  labels                    = local.labels
  tags                      = [var.name]
  allow_stopping_for_update = true

  boot_disk {
    kms_key_self_link = var.kms_key_self_link != "" ? var.kms_key_self_link : null
    initialize_params {
      image  = var.image
      size   = local.disk_gb
      type   = "pd-balanced"
      labels = local.labels
    }
  }

  network_interface {
    network    = local.network
    subnetwork = local.subnetwork
    access_config {
      nat_ip = google_compute_address.stack.address
    }
  }

  dynamic "guest_accelerator" {
    for_each = local.tier.gpu != "" ? [local.tier.gpu] : []
    content {
      type  = guest_accelerator.value
      count = 1
    }
  }

  scheduling {
    # GPU VMs cannot live-migrate: they stop for host maintenance and restart (the systemd unit brings the stack back).
    on_host_maintenance = local.tier.gpu != "" ? "TERMINATE" : "MIGRATE"
    automatic_restart   = true
  }

  shielded_instance_config {
    enable_secure_boot          = local.tier.gpu == ""
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  metadata = {
    user-data              = local.user_data
    enable-oslogin         = var.ssh_public_key == "" ? "TRUE" : "FALSE"
    block-project-ssh-keys = true
    serial-port-enable     = false
    ssh-keys               = var.ssh_public_key != "" ? "ubuntu:${var.ssh_public_key}" : ""
  }

  service_account {
    email  = google_service_account.stack.email
    scopes = ["cloud-platform"] # access is decided by IAM roles, of which the account has none but the secrets'
  }

  lifecycle {
    # A newer Ubuntu image or an edited boot script must not replace a running VM and its data.
    ignore_changes = [boot_disk[0].initialize_params[0].image, metadata["user-data"]]
  }
}
