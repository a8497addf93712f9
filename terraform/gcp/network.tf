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
  priority      = 900
  source_ranges = var.allowed_ssh_cidrs
  target_tags   = [var.name]

  allow {
    protocol = "tcp"
    ports    = ["22"]
  }
}

# The project's default network allows SSH from anywhere (default-allow-ssh, priority 65534): a deny at 950
# keeps SSH to allowed_ssh_cidrs (allowed at 900) whatever the network.
resource "google_compute_firewall" "ssh_deny_others" {
  name          = "${var.name}-ssh-deny-others"
  network       = local.network
  direction     = "INGRESS"
  priority      = 950
  source_ranges = ["0.0.0.0/0"]
  target_tags   = [var.name]

  deny {
    protocol = "tcp"
    ports    = ["22"]
  }
}

# With TLS, port 80 is open to everyone: Let's Encrypt's HTTP challenge comes from anywhere. The edge only
# answers the challenge there and redirects to 443 (which stays with allowed_api_cidrs).
resource "google_compute_firewall" "acme" {
  #checkov:skip=CKV_GCP_106:port 80 must be reachable by Let's Encrypt's validation servers, which have no fixed addresses; it serves only the ACME challenge and a redirect to 443
  count         = var.tls_domain != "" ? 1 : 0
  name          = "${var.name}-acme"
  network       = local.network
  direction     = "INGRESS"
  source_ranges = ["0.0.0.0/0"]
  target_tags   = [var.name]

  allow {
    protocol = "tcp"
    ports    = ["80"]
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
