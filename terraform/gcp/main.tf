provider "google" {
  project = var.project_id
  region  = var.region
}

locals {
  # Tier map: machine type, its memory (GiB, checked against configs/tiers.yaml by the tests), GPU, and the
  # monthly on-demand estimate in us-central1 (USD, machine + GPU + pd-balanced disk + external IPv4; list
  # prices as of 2026-11-22, see terraform/README.md). Override types with var.machine_types. The disk comes
  # from configs/tiers.yaml, the one table of tier sizes.
  tiers = {
    1 = { machine_type = "e2-small", memory_gib = 2, gpu = "", monthly_usd = 19 }
    2 = { machine_type = "e2-medium", memory_gib = 4, gpu = "", monthly_usd = 33 }
    3 = { machine_type = "e2-standard-4", memory_gib = 16, gpu = "", monthly_usd = 109 }
    4 = { machine_type = "n1-standard-4", memory_gib = 15, gpu = "nvidia-tesla-t4", monthly_usd = 410 }
  }
  sizes        = yamldecode(file("${path.module}/../../configs/tiers.yaml")).tiers
  tier         = local.tiers[var.tier]
  machine_type = lookup(var.machine_types, tostring(var.tier), local.tier.machine_type)
  disk_gb      = var.disk_gb > 0 ? var.disk_gb : local.sizes[tostring(var.tier)].disk_gb
  zone         = var.zone != "" ? var.zone : "${var.region}-a"
  network      = var.create_network ? google_compute_network.stack[0].self_link : "default"
  subnetwork   = var.create_network ? google_compute_subnetwork.stack[0].self_link : null
  secret_ids   = compact([var.anthropic_api_key_secret, var.gateway_api_keys_secret])
  admin_ports  = ["3000", "5678", "9090"] # Grafana, n8n, Prometheus
  # With TLS, the edge answers on 443 to allowed_api_cidrs, and on 80 to everyone (network.tf, acme);
  # without, the gateway port itself.
  api_ports = var.tls_domain != "" ? ["443"] : [tostring(var.gateway_port)]
  labels    = merge({ project = "hybrid-ai-stack", managed-by = "terraform" }, var.labels)
  # SSH through Identity-Aware Proxy when that is the only way in (allowed_ssh_cidrs = IAP's range)
  iap = contains(var.allowed_ssh_cidrs, "35.235.240.0/20") ? " --tunnel-through-iap" : ""

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
    backup_bucket       = var.backup_bucket != "" ? "gs://${var.backup_bucket}/hybrid-ai-stack" : ""
    backup_schedule     = var.backup_schedule
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

# Backups: the VM's account may create objects in the named bucket (and nothing else there).
resource "google_storage_bucket_iam_member" "backup" {
  count  = var.backup_bucket != "" ? 1 : 0
  bucket = var.backup_bucket
  role   = "roles/storage.objectCreator"
  member = "serviceAccount:${google_service_account.stack.email}"
}

resource "google_compute_address" "stack" {
  name   = var.name
  region = var.region
}

# The boot disk on its own: its size grows in place when the tier changes (as a VM's initialize_params it could
# only be replaced, data and all), and it outlives a VM that must be replaced (it is attached, not owned).
resource "google_compute_disk" "boot" {
  #checkov:skip=CKV_GCP_37:customer-supplied keys (CSEK) cannot be used unattended; Google-managed keys, or CMEK via kms_key_self_link
  name   = "${var.name}-boot"
  zone   = local.zone
  image  = var.image
  size   = local.disk_gb
  type   = "pd-balanced"
  labels = local.labels

  dynamic "disk_encryption_key" {
    for_each = var.kms_key_self_link != "" ? [var.kms_key_self_link] : []
    content {
      kms_key_self_link = disk_encryption_key.value
    }
  }

  lifecycle {
    # A newer Ubuntu image must not replace the disk that holds the models, the spend and the n8n data.
    ignore_changes = [image]
  }
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
  deletion_protection       = var.deletion_protection # deploy-all.sh --destroy lifts it first

  boot_disk {
    source      = google_compute_disk.boot.self_link
    auto_delete = false # the disk resource owns it
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
    tier                   = tostring(var.tier) # read at every start: a new tier reconfigures the stack
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
    # An edited boot script must not replace a running VM.
    ignore_changes = [metadata["user-data"]]
  }
}
