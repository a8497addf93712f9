provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ Project = "hybrid-ai-stack", ManagedBy = "terraform" }, var.tags)
  }
}

locals {
  # Tier map: instance type, root disk (GB) and the monthly on-demand estimate in us-east-1 (USD, instance +
  # gp3 disk + public IPv4; list prices as of 2026-11-22, see terraform/README.md). Override types with
  # var.instance_types.
  tiers = {
    1 = { instance_type = "t3.small", disk_gb = 30, gpu = false, monthly_usd = 21 }
    2 = { instance_type = "t3.medium", disk_gb = 50, gpu = false, monthly_usd = 38 }
    3 = { instance_type = "t3.xlarge", disk_gb = 80, gpu = false, monthly_usd = 132 }
    4 = { instance_type = "g4dn.xlarge", disk_gb = 120, gpu = true, monthly_usd = 397 }
  }
  tier          = local.tiers[var.tier]
  instance_type = lookup(var.instance_types, tostring(var.tier), local.tier.instance_type)
  disk_gb       = var.disk_gb > 0 ? var.disk_gb : local.tier.disk_gb
  secret_arns   = compact([var.anthropic_api_key_secret_arn, var.gateway_api_keys_secret_arn])
  admin_ports   = { grafana = 3000, n8n = 5678, prometheus = 9090 }
  # With TLS, Caddy answers on 443 (and 80 for the ACME challenge); without, the gateway port itself.
  api_ports = var.tls_domain != "" ? { http = 80, https = 443 } : { gateway = var.gateway_port }

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
  iam_instance_profile        = length(local.secret_arns) > 0 ? aws_iam_instance_profile.stack[0].name : null
  associate_public_ip_address = true
  ebs_optimized               = true
  monitoring                  = false
  user_data                   = local.user_data

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1          # containers cannot reach the instance's credentials
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
    # A newer Ubuntu image or an edited boot script must not replace a running VM and its data.
    ignore_changes = [ami, user_data]
  }
}

resource "aws_eip" "stack" {
  domain   = "vpc"
  instance = aws_instance.stack.id
  tags     = { Name = var.name }
}
