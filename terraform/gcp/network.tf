# A dedicated VPC network and subnet (or the project's default network), and the firewall rules: the API
# from allowed_api_cidrs, SSH from allowed_ssh_cidrs, admin UIs only from admin_cidrs. Egress stays open
# (GCP's implied allow-egress rule): model pulls, the cloud model APIs, apt and Docker Hub.

resource "google_compute_network" "stack" {
  count                   = var.create_network ? 1 : 0
  name                    = var.name
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "stack" {
  #checkov:skip=CKV_GCP_26:VPC flow logs cost per GB; enable them at the project level if you want them
  count                    = var.create_network ? 1 : 0
  name                     = var.name
  region                   = var.region
  network                  = google_compute_network.stack[0].id
  ip_cidr_range            = var.subnet_cidr
  private_ip_google_access = true
}

resource "google_compute_firewall" "ssh" {
  name          = "${var.name}-ssh"
  network       = local.network
  direction     = "INGRESS"
  source_ranges = var.allowed_ssh_cidrs
  target_tags   = [var.name]

  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}

resource "google_compute_firewall" "api" {
  count         = length(var.allowed_api_cidrs) > 0 ? 1 : 0
  name          = "${var.name}-api"
  network       = local.network
  direction     = "INGRESS"
  source_ranges = var.allowed_api_cidrs
  target_tags   = [var.name]

  allow {
    protocol = "tcp"
    ports    = local.api_ports
  }
}

resource "google_compute_firewall" "admin" {
  count         = length(var.admin_cidrs) > 0 ? 1 : 0
  name          = "${var.name}-admin"
  network       = local.network
  direction     = "INGRESS"
  source_ranges = var.admin_cidrs
  target_tags   = [var.name]

  allow {
    protocol = "tcp"
    ports    = local.admin_ports
  }
}
