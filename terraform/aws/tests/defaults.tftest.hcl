# terraform test with a mocked AWS provider: no account, no network. Run: terraform test (after init).
mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["eu-west-1a", "eu-west-1b"] }
  }
  mock_data "aws_subnets" {
    defaults = { ids = ["subnet-0b", "subnet-0a"] }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
}

variables {
  region            = "eu-west-1"
  allowed_ssh_cidrs = ["203.0.113.7/32"]
  allowed_api_cidrs = ["198.51.100.0/24", "2001:db8::/32"]
  ssh_public_key    = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKey test@example"
  stack_repo_url    = "https://example.com/hybrid-ai-stack.git"
}

run "tier_1" {
  command = plan
  variables { tier = 1 }
  assert {
    condition     = aws_instance.stack.instance_type == "t3.small" && aws_instance.stack.root_block_device[0].volume_size == 30
    error_message = "tier 1 must be t3.small with 30 GB"
  }
}

run "tier_2" {
  command = plan
  variables { tier = 2 }
  assert {
    condition     = aws_instance.stack.instance_type == "t3.medium" && aws_instance.stack.root_block_device[0].volume_size == 50
    error_message = "tier 2 must be t3.medium with 50 GB"
  }
}

run "tier_3" {
  command = plan
  variables { tier = 3 }
  assert {
    condition     = aws_instance.stack.instance_type == "t3.xlarge" && aws_instance.stack.root_block_device[0].volume_size == 80
    error_message = "tier 3 must be t3.xlarge with 80 GB"
  }
  assert {
    condition     = !strcontains(local.user_data, "GPU=\"true\"")
    error_message = "only tier 4 installs the NVIDIA driver"
  }
}

run "tier_4_gpu" {
  command = plan
  variables { tier = 4 }
  assert {
    condition     = aws_instance.stack.instance_type == "g4dn.xlarge" && aws_instance.stack.root_block_device[0].volume_size == 120
    error_message = "tier 4 must be g4dn.xlarge (NVIDIA T4) with 120 GB"
  }
  assert {
    condition     = strcontains(local.user_data, "GPU=\"true\"") && strcontains(local.user_data, "TIER=\"4\"")
    error_message = "tier 4's boot script must install the NVIDIA driver and deploy tier 4"
  }
}

run "instance_type_override_and_disk" {
  command = plan
  variables {
    tier           = 4
    instance_types = { "4" = "g5.xlarge" }
    disk_gb        = 200
  }
  assert {
    condition     = aws_instance.stack.instance_type == "g5.xlarge" && aws_instance.stack.root_block_device[0].volume_size == 200
    error_message = "instance_types and disk_gb must override the tier map"
  }
}

run "hardening" {
  command = plan
  assert {
    condition     = aws_instance.stack.metadata_options[0].http_tokens == "required" && aws_instance.stack.metadata_options[0].http_put_response_hop_limit == 1
    error_message = "IMDSv2 must be required, unreachable from containers"
  }
  assert {
    condition     = aws_instance.stack.root_block_device[0].encrypted
    error_message = "the root disk must be encrypted"
  }
  assert {
    condition     = length(aws_iam_instance_profile.stack) == 0 && length(aws_iam_role.stack) == 0
    error_message = "no instance role without a secret to read"
  }
  assert {
    condition     = length(aws_vpc.stack) == 1 && length(aws_default_security_group.stack) == 1
    error_message = "a dedicated VPC (default security group emptied) is the default"
  }
}

run "ssh_only_from_given_cidrs" {
  command = plan
  assert {
    condition     = join(",", keys(aws_vpc_security_group_ingress_rule.ssh)) == "203.0.113.7/32"
    error_message = "SSH must open for the given CIDRs only"
  }
  assert {
    condition     = alltrue([for r in values(aws_vpc_security_group_ingress_rule.api) : r.from_port == 8080 && r.to_port == 8080])
    error_message = "without TLS the API rules open the gateway port only"
  }
  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.api) == 2 && aws_vpc_security_group_ingress_rule.api["gateway 2001:db8::/32"].cidr_ipv6 == "2001:db8::/32"
    error_message = "one API rule per CIDR, IPv6 ranges as cidr_ipv6"
  }
}

run "no_admin_port_without_admin_cidrs" {
  command = apply
  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.admin) == 0
    error_message = "Grafana, n8n and Prometheus must stay closed without admin_cidrs"
  }
  assert {
    condition = alltrue([for r in concat(values(aws_vpc_security_group_ingress_rule.api), values(aws_vpc_security_group_ingress_rule.ssh)) :
    !contains([3000, 5678, 9090], r.from_port)])
    error_message = "no other rule may open an admin port"
  }
  assert {
    condition     = strcontains(local.user_data, "ADMIN_PUBLIC=\"false\"") && length(output.admin_urls) == 0
    error_message = "the admin UIs must bind to loopback on the VM"
  }
  assert {
    condition     = strcontains(output.admin_tunnel_command, "-L 3000:127.0.0.1:3000")
    error_message = "the outputs must print the tunnel command"
  }
}

run "admin_cidrs_open_admin_ports" {
  command = plan
  variables { admin_cidrs = ["192.0.2.0/28"] }
  assert {
    condition     = join(",", sort([for r in values(aws_vpc_security_group_ingress_rule.admin) : tostring(r.from_port)])) == "3000,5678,9090"
    error_message = "admin_cidrs must open exactly Grafana, n8n and Prometheus"
  }
  assert {
    condition     = alltrue([for r in values(aws_vpc_security_group_ingress_rule.admin) : r.cidr_ipv4 == "192.0.2.0/28"])
    error_message = "admin ports open to admin_cidrs only"
  }
}

run "tls_moves_api_to_443" {
  command = plan
  variables { tls_domain = "ai.example.com" }
  assert {
    condition     = join(",", sort(distinct([for r in values(aws_vpc_security_group_ingress_rule.api) : tostring(r.from_port)]))) == "443"
    error_message = "with TLS the API is 443, for allowed_api_cidrs only"
  }
  assert {
    condition     = one(aws_vpc_security_group_ingress_rule.acme).from_port == 80 && one(aws_vpc_security_group_ingress_rule.acme).cidr_ipv4 == "0.0.0.0/0"
    error_message = "with TLS port 80 is open to everyone: Let's Encrypt's HTTP challenge comes from anywhere"
  }
  assert {
    condition     = strcontains(local.user_data, "TLS_DOMAIN=\"ai.example.com\"")
    error_message = "the boot script must set up the TLS proxy"
  }
}

run "no_acme_port_without_tls" {
  command = plan
  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.acme) == 0
    error_message = "port 80 stays closed without tls_domain"
  }
}

run "data_safety" {
  command = plan
  variables {
    backup_bucket   = "stack-backups"
    backup_schedule = "*-*-* 03:00:00"
  }
  assert {
    condition     = aws_instance.stack.disable_api_termination == true
    error_message = "the VM is protected from deletion by default"
  }
  assert {
    condition     = length(aws_iam_instance_profile.stack) == 1 && one(local.backup_arns) == "arn:aws:s3:::stack-backups/hybrid-ai-stack/*"
    error_message = "a backup bucket gives the VM write access to its hybrid-ai-stack/ prefix"
  }
  assert {
    condition     = strcontains(local.user_data, "BACKUP_BUCKET=\"s3://stack-backups/hybrid-ai-stack\"") && strcontains(local.user_data, "BACKUP_SCHEDULE=\"*-*-* 03:00:00\"")
    error_message = "the boot script installs the backup timer"
  }
  assert {
    condition     = aws_instance.stack.metadata_options[0].instance_metadata_tags == "enabled" && aws_instance.stack.tags["Tier"] == "2"
    error_message = "the VM reads its tier from its Tier tag at every start"
  }
}

run "default_vpc_option" {
  command = plan
  variables { create_vpc = false }
  assert {
    condition     = length(aws_vpc.stack) == 0 && aws_instance.stack.subnet_id == "subnet-0a"
    error_message = "create_vpc = false must use the default VPC's first subnet"
  }
}

run "secret_arn_grants_read_on_that_secret_only" {
  command = plan
  variables {
    anthropic_api_key_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:anthropic-AbCdEf"
  }
  assert {
    condition     = length(aws_iam_instance_profile.stack) == 1 && one(local.secret_arns) == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:anthropic-AbCdEf"
    error_message = "a named secret gives the VM a role for that secret"
  }
  assert {
    condition     = strcontains(local.user_data, "ANTHROPIC_SECRET=\"arn:aws:secretsmanager:") && !can(regex("sk-ant", local.user_data))
    error_message = "the boot script gets the secret's name, never its value"
  }
}

run "outputs" {
  command = apply
  variables { tier = 3 }
  assert {
    condition     = output.tier == 3 && output.instance_type == "t3.xlarge" && output.monthly_cost_estimate_usd > 0
    error_message = "tier, instance type and estimate must be output"
  }
  assert {
    condition     = output.gateway_url == "http://${output.public_ip}:8080" && output.ssh_command == "ssh ubuntu@${output.public_ip}"
    error_message = "gateway URL and SSH command must point at the public IP"
  }
}
