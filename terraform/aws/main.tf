provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ Project = "hybrid-ai-stack", ManagedBy = "terraform" }, var.tags)
  }
}

locals {
  # Tier map: instance type, its memory (GiB, checked against configs/tiers.yaml by the tests) and the monthly
  # on-demand estimate in us-east-1 (USD, instance + gp3 disk + public IPv4; list prices as of 2026-11-22, see
  # terraform/README.md). Override types with var.instance_types. The disk comes from configs/tiers.yaml, the
  # one table of tier sizes.
  tiers = {
    1 = { instance_type = "t3.small", memory_gib = 2, gpu = false, monthly_usd = 21 }
    2 = { instance_type = "t3.medium", memory_gib = 4, gpu = false, monthly_usd = 38 }
    3 = { instance_type = "t3.xlarge", memory_gib = 16, gpu = false, monthly_usd = 132 }
    4 = { instance_type = "g4dn.xlarge", memory_gib = 16, gpu = true, monthly_usd = 397 }
  }
  sizes         = yamldecode(file("${path.module}/../../configs/tiers.yaml")).tiers
  tier          = local.tiers[var.tier]
  instance_type = lookup(var.instance_types, tostring(var.tier), local.tier.instance_type)
  disk_gb       = var.disk_gb > 0 ? var.disk_gb : local.sizes[tostring(var.tier)].disk_gb
  secret_arns   = compact([var.anthropic_api_key_secret_arn, var.gateway_api_keys_secret_arn])
  backup_arns   = var.backup_bucket != "" ? ["arn:aws:s3:::${var.backup_bucket}/hybrid-ai-stack/*"] : []
  needs_role    = length(local.secret_arns) > 0 || length(local.backup_arns) > 0
  admin_ports   = { grafana = 3000, n8n = 5678, prometheus = 9090 }
  # With TLS, the edge answers on 443 to allowed_api_cidrs, and on 80 to everyone: Let's Encrypt's HTTP
  # challenge comes from anywhere (80 only redirects to 443 and answers the challenge). Without TLS, the
  # gateway port itself.
  api_ports = var.tls_domain != "" ? { https = 443 } : { gateway = var.gateway_port }

  user_data = templatefile("${path.module}/../cloud-init/bootstrap.sh.tftpl", {
    cloud               = "aws"
    tier                = var.tier
    stack_dir           = "/opt/hybrid-ai-stack"
    stack_repo_url      = var.stack_repo_url
    stack_ref           = var.stack_ref
    stack_archive_url   = var.stack_archive_url
    gateway_port        = var.gateway_port
    admin_public        = length(var.admin_cidrs) > 0
    tls_domain          = var.tls_domain
    tls_email           = var.tls_email
    anthropic_secret    = var.anthropic_api_key_secret_arn
    gateway_keys_secret = var.gateway_api_keys_secret_arn
    budget_monthly_usd  = var.budget_monthly_usd
    gpu                 = local.tier.gpu
    backup_bucket       = var.backup_bucket != "" ? "s3://${var.backup_bucket}/hybrid-ai-stack" : ""
    backup_schedule     = var.backup_schedule
  })
}

data "aws_ami" "ubuntu" {
  count       = var.ami_id == "" ? 1 : 0
  most_recent = true
  owners      = ["099720109477"] # Canonical

  filter {
    name   = "name"
    values = ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]
  }
  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

resource "aws_key_pair" "admin" {
  key_name_prefix = "${var.name}-"
  public_key      = var.ssh_public_key
}

resource "aws_instance" "stack" {
  #checkov:skip=CKV_AWS_126:detailed (1-minute) monitoring costs extra; Prometheus on the VM already scrapes every 15 s
  #checkov:skip=CKV_AWS_88:the VM serves the gateway API on its public IP; the security group admits allowed_api_cidrs only
  #checkov:skip=CKV2_AWS_41:the instance profile exists only when a Secrets Manager ARN is given; the VM needs no AWS API otherwise
  ami                         = var.ami_id != "" ? var.ami_id : data.aws_ami.ubuntu[0].id
  instance_type               = local.instance_type
  subnet_id                   = local.subnet_id
  vpc_security_group_ids      = [aws_security_group.stack.id]
  key_name                    = aws_key_pair.admin.key_name
  iam_instance_profile        = local.needs_role ? aws_iam_instance_profile.stack[0].name : null
  disable_api_termination     = var.deletion_protection # deploy-all.sh --destroy lifts it first
  associate_public_ip_address = true
  ebs_optimized               = true
  monitoring                  = false
  user_data                   = local.user_data

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1          # containers cannot reach the instance's credentials
    instance_metadata_tags      = "enabled"  # the boot unit reads the Tier tag: a new tier reconfigures the stack
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = local.disk_gb
    encrypted             = true
    kms_key_id            = var.kms_key_id != "" ? var.kms_key_id : null
    delete_on_termination = true
  }

  tags = { Name = var.name, Tier = tostring(var.tier) }

  lifecycle {
    # A newer Ubuntu image, an edited boot script or a new SSH key must not replace a running VM and its
    # data (a new key: add it to ~/.ssh/authorized_keys on the VM; terraform/README.md).
    ignore_changes = [ami, user_data, key_name]
  }
}

resource "aws_eip" "stack" {
  domain   = "vpc"
  instance = aws_instance.stack.id
  tags     = { Name = var.name }
}
