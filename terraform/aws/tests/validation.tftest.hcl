# Bad input is refused before any plan.
mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["eu-west-1a"] }
  }
}

variables {
  region            = "eu-west-1"
  allowed_ssh_cidrs = ["203.0.113.7/32"]
  allowed_api_cidrs = ["198.51.100.0/24"]
  ssh_public_key    = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKey test@example"
  stack_repo_url    = "https://example.com/hybrid-ai-stack.git"
}

run "tier_5_is_refused" {
  command = plan
  variables { tier = 5 }
  expect_failures = [var.tier]
}

run "malformed_ssh_cidr_is_refused" {
  command = plan
  variables { allowed_ssh_cidrs = ["203.0.113.300/32"] }
  expect_failures = [var.allowed_ssh_cidrs]
}

run "ssh_from_anywhere_is_refused" {
  command = plan
  variables { allowed_ssh_cidrs = ["0.0.0.0/0"] }
  expect_failures = [var.allowed_ssh_cidrs]
}

run "empty_ssh_cidrs_are_refused" {
  command = plan
  variables { allowed_ssh_cidrs = [] }
  expect_failures = [var.allowed_ssh_cidrs]
}

run "malformed_api_cidr_is_refused" {
  command = plan
  variables { allowed_api_cidrs = ["not-a-cidr"] }
  expect_failures = [var.allowed_api_cidrs]
}

run "admin_from_anywhere_is_refused" {
  command = plan
  variables { admin_cidrs = ["0.0.0.0/0"] }
  expect_failures = [var.admin_cidrs]
}

run "empty_region_is_refused" {
  command = plan
  variables { region = " " }
  expect_failures = [var.region]
}

run "admin_port_as_gateway_port_is_refused" {
  command = plan
  variables { gateway_port = 3000 }
  expect_failures = [var.gateway_port]
}
