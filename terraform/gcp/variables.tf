variable "project_id" {
  description = "GCP project to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project id (6-30 lower-case letters, digits, dashes)."
  }
}

variable "region" {
  description = "GCP region, e.g. europe-west4 (tier 4 needs a region whose zone offers NVIDIA T4)."
  type        = string

  validation {
    condition     = length(trimspace(var.region)) > 0
    error_message = "region must not be empty."
  }
}

variable "zone" {
  description = "Zone inside region; empty (default) takes \"<region>-a\"."
  type        = string
  default     = ""
}

variable "tier" {
  description = "Deployment tier 1-4 (1 e2-small, 2 e2-medium, 3 e2-standard-4, 4 n1-standard-4 + NVIDIA T4). Sets the machine type, the disk size and the models the stack pulls."
  type        = number
  default     = 2

  validation {
    condition     = contains([1, 2, 3, 4], var.tier)
    error_message = "tier must be 1, 2, 3 or 4."
  }
}

variable "name" {
  description = "Name prefix of every resource."
  type        = string
  default     = "hybrid-ai-stack"

  validation {
    # 27 at most: the VM's service account id is "NAME-vm", which GCP caps at 30 characters
    condition     = can(regex("^[a-z][a-z0-9-]{1,26}$", var.name))
    error_message = "name must be 2-27 lower-case letters, digits or dashes, starting with a letter (the service account NAME-vm is capped at 30)."
  }
}

variable "allowed_ssh_cidrs" {
  description = "CIDRs allowed to reach SSH (22). Required, at least one; the whole internet (0.0.0.0/0, ::/0) is refused. For IAP TCP forwarding use 35.235.240.0/20."
  type        = list(string)

  validation {
    condition     = length(var.allowed_ssh_cidrs) > 0 && alltrue([for c in var.allowed_ssh_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_ssh_cidrs needs at least one well-formed CIDR, e.g. 203.0.113.7/32."
  }
  validation {
    condition     = !anytrue([for c in var.allowed_ssh_cidrs : endswith(c, "/0")])
    error_message = "SSH from the whole internet is refused: give your own address range."
  }
}

variable "allowed_api_cidrs" {
  description = "CIDRs allowed to call the gateway API (gateway_port, or 80/443 with tls_domain). The API needs a gateway key either way."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.allowed_api_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_api_cidrs must hold well-formed CIDRs, e.g. 198.51.100.0/24."
  }
}

variable "admin_cidrs" {
  description = "CIDRs allowed to reach Grafana (3000), n8n (5678) and Prometheus (9090). Empty (default): they stay closed; use the SSH tunnel the outputs print."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && !endswith(c, "/0")])
    error_message = "admin_cidrs must hold well-formed CIDRs narrower than the whole internet."
  }
}

variable "ssh_public_key" {
  description = "OpenSSH public key for the ubuntu user, set as instance metadata. Empty (default): OS Login (your Google identity, roles/compute.osAdminLogin)."
  type        = string
  default     = ""

  validation {
    condition     = var.ssh_public_key == "" || can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+", var.ssh_public_key))
    error_message = "ssh_public_key must be empty or an OpenSSH public key line (ssh-ed25519 AAAA...)."
  }
}

variable "create_network" {
  description = "Create a dedicated VPC network and subnet (true) or use the project's default network (false)."
  type        = bool
  default     = true
}

variable "subnet_cidr" {
  description = "CIDR of the dedicated subnet (create_network = true)."
  type        = string
  default     = "10.42.0.0/24"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0))
    error_message = "subnet_cidr must be a well-formed IPv4 CIDR."
  }
}

variable "machine_types" {
  description = "Override the machine type of some tiers, e.g. { 3 = \"e2-standard-8\" }."
  type        = map(string)
  default     = {}
}

variable "disk_gb" {
  description = "Boot disk size in GB; 0 (default) takes the tier's size (30/50/80/120)."
  type        = number
  default     = 0

  validation {
    condition     = var.disk_gb == 0 || (var.disk_gb >= 20 && var.disk_gb <= 2000)
    error_message = "disk_gb must be 0 (tier default) or between 20 and 2000."
  }
}

variable "image" {
  description = "Boot image (family or self link)."
  type        = string
  default     = "ubuntu-os-cloud/ubuntu-2404-lts-amd64"
}

variable "kms_key_self_link" {
  description = "Cloud KMS key for the boot disk (CMEK); empty (default) uses Google-managed encryption. The disk is encrypted either way."
  type        = string
  default     = ""
}

variable "gateway_port" {
  description = "Port of the gateway API on the VM."
  type        = number
  default     = 8080

  validation {
    condition     = var.gateway_port >= 1024 && var.gateway_port <= 65535 && !contains([3000, 5678, 9090], var.gateway_port)
    error_message = "gateway_port must be 1024-65535 and not an admin port (3000, 5678, 9090)."
  }
}

variable "tls_domain" {
  description = "DNS name pointing at the VM's IP. When set, Caddy serves the gateway on 443 with a Let's Encrypt certificate (port 80 opens for the challenge) and the plain gateway port stays closed."
  type        = string
  default     = ""

  validation {
    condition     = var.tls_domain == "" || can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.tls_domain))
    error_message = "tls_domain must be a DNS name such as ai.example.com."
  }
}

variable "tls_email" {
  description = "Contact e-mail for Let's Encrypt (optional, with tls_domain)."
  type        = string
  default     = ""
}

variable "stack_repo_url" {
  description = "Git URL the VM clones the stack from (https)."
  type        = string

  validation {
    condition     = can(regex("^https://", var.stack_repo_url))
    error_message = "stack_repo_url must be an https:// git URL."
  }
}

variable "stack_ref" {
  description = "Git ref (tag, branch or commit) the VM checks out."
  type        = string
  default     = "main"

  validation {
    condition     = length(trimspace(var.stack_ref)) > 0
    error_message = "stack_ref must not be empty."
  }
}

variable "stack_archive_url" {
  description = "Release archive (.tar.gz) to fetch instead of cloning; empty (default) clones stack_repo_url."
  type        = string
  default     = ""

  validation {
    condition     = var.stack_archive_url == "" || can(regex("^https://", var.stack_archive_url))
    error_message = "stack_archive_url must be empty or an https:// URL."
  }
}

variable "anthropic_api_key_secret" {
  description = "Secret Manager secret id (in project_id) holding the Anthropic API key. Empty: no cloud model until you set ANTHROPIC_API_KEY in the VM's .env."
  type        = string
  default     = ""

  validation {
    condition     = var.anthropic_api_key_secret == "" || can(regex("^[A-Za-z0-9_-]{1,255}$", var.anthropic_api_key_secret))
    error_message = "anthropic_api_key_secret must be a Secret Manager secret id."
  }
}

variable "gateway_api_keys_secret" {
  description = "Secret Manager secret id holding the gateway API keys (comma-separated). Empty: the VM generates them (read them over SSH)."
  type        = string
  default     = ""

  validation {
    condition     = var.gateway_api_keys_secret == "" || can(regex("^[A-Za-z0-9_-]{1,255}$", var.gateway_api_keys_secret))
    error_message = "gateway_api_keys_secret must be a Secret Manager secret id."
  }
}

variable "budget_monthly_usd" {
  description = "Monthly cloud-model budget the gateway enforces (BUDGET_MONTHLY_USD); 0 = no limit."
  type        = number
  default     = 0

  validation {
    condition     = var.budget_monthly_usd >= 0
    error_message = "budget_monthly_usd must be 0 or more."
  }
}

variable "labels" {
  description = "Labels added to every resource that takes them."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Refuse to delete the VM (and its disk, which holds every model, the spend records and the n8n data) until this is false. ./deploy-all.sh CLOUD TIER --destroy turns it off first."
  type        = bool
  default     = true
}

variable "backup_bucket" {
  description = "A bucket (name only) the VM uploads a backup archive to on backup_schedule, under hybrid-ai-stack/; the VM gets write access to that prefix only. Empty: backups stay on the VM (./deploy-all.sh backup)."
  type        = string
  default     = ""

  validation {
    condition     = var.backup_bucket == "" || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.backup_bucket))
    error_message = "backup_bucket must be a bucket name such as my-stack-backups (no scheme, no path)."
  }
}

variable "backup_schedule" {
  description = "When the VM backs up to backup_bucket: a systemd OnCalendar value (daily, weekly, *-*-* 03:00:00)."
  type        = string
  default     = "daily"

  validation {
    condition     = can(regex("^[A-Za-z0-9*:, /.-]+$", var.backup_schedule))
    error_message = "backup_schedule must be a systemd OnCalendar value such as daily or *-*-* 03:00:00."
  }
}
