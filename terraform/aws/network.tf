# A dedicated VPC with one public subnet (or the default VPC), and the only firewall: the security group.

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:only the first zone is used, once, to place the subnet; later zones cannot change a planned subnet
  state = "available"
}

resource "aws_vpc" "stack" {
  #checkov:skip=CKV2_AWS_11:VPC flow logs cost per GB and need a log destination; enable them at the account level if you want them
  count                = var.create_vpc ? 1 : 0
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = var.name }
}

# The VPC's default security group denies everything (nothing uses it).
resource "aws_default_security_group" "stack" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.stack[0].id
}

resource "aws_internet_gateway" "stack" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.stack[0].id
  tags   = { Name = var.name }
}

resource "aws_subnet" "public" {
  count                   = var.create_vpc ? 1 : 0
  vpc_id                  = aws_vpc.stack[0].id
  cidr_block              = cidrsubnet(var.vpc_cidr, 24 - tonumber(split("/", var.vpc_cidr)[1]), 0)
  availability_zone       = data.aws_availability_zones.available.names[0]
  map_public_ip_on_launch = false
  tags                    = { Name = "${var.name}-public" }
}

resource "aws_route_table" "public" {
  count  = var.create_vpc ? 1 : 0
  vpc_id = aws_vpc.stack[0].id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.stack[0].id
  }
  tags = { Name = "${var.name}-public" }
}

resource "aws_route_table_association" "public" {
  count          = var.create_vpc ? 1 : 0
  subnet_id      = aws_subnet.public[0].id
  route_table_id = aws_route_table.public[0].id
}

data "aws_vpc" "default" {
  count   = var.create_vpc ? 0 : 1
  default = true
}

data "aws_subnets" "default" {
  count = var.create_vpc ? 0 : 1
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default[0].id]
  }
  filter {
    name   = "default-for-az"
    values = ["true"]
  }
}

locals {
  vpc_id    = var.create_vpc ? aws_vpc.stack[0].id : data.aws_vpc.default[0].id
  subnet_id = var.create_vpc ? aws_subnet.public[0].id : sort(data.aws_subnets.default[0].ids)[0]
}

resource "aws_security_group" "stack" {
  name_prefix = "${var.name}-"
  description = "Hybrid AI Stack: API from allowed_api_cidrs, SSH from allowed_ssh_cidrs, admin UIs from admin_cidrs only"
  vpc_id      = local.vpc_id
  tags        = { Name = var.name }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each          = toset(var.allowed_ssh_cidrs)
  security_group_id = aws_security_group.stack.id
  description       = "SSH"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = strcontains(each.value, ":") ? null : each.value
  cidr_ipv6         = strcontains(each.value, ":") ? each.value : null
}

resource "aws_vpc_security_group_ingress_rule" "api" {
  for_each          = { for pair in setproduct(keys(local.api_ports), var.allowed_api_cidrs) : "${pair[0]} ${pair[1]}" => { port = local.api_ports[pair[0]], cidr = pair[1] } }
  security_group_id = aws_security_group.stack.id
  description       = "gateway API"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = strcontains(each.value.cidr, ":") ? null : each.value.cidr
  cidr_ipv6         = strcontains(each.value.cidr, ":") ? each.value.cidr : null
}

# With TLS, port 80 is open to everyone: Let's Encrypt's HTTP challenge comes from anywhere. The edge only
# answers the challenge there and redirects to 443 (which stays with allowed_api_cidrs).
resource "aws_vpc_security_group_ingress_rule" "acme" {
  #checkov:skip=CKV_AWS_260:port 80 must be reachable by Let's Encrypt's validation servers, which have no fixed addresses; it serves only the ACME challenge and a redirect to 443
  count             = var.tls_domain != "" ? 1 : 0
  security_group_id = aws_security_group.stack.id
  description       = "ACME HTTP challenge and redirect to HTTPS"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "admin" {
  for_each          = { for pair in setproduct(keys(local.admin_ports), var.admin_cidrs) : "${pair[0]} ${pair[1]}" => { port = local.admin_ports[pair[0]], cidr = pair[1] } }
  security_group_id = aws_security_group.stack.id
  description       = "admin UI: ${split(" ", each.key)[0]}"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = strcontains(each.value.cidr, ":") ? null : each.value.cidr
  cidr_ipv6         = strcontains(each.value.cidr, ":") ? each.value.cidr : null
}

# Egress stays open: model pulls (Ollama registry), the cloud model APIs, apt and Docker Hub.
resource "aws_vpc_security_group_egress_rule" "all_ipv4" {
  security_group_id = aws_security_group.stack.id
  description       = "model pulls, cloud APIs, packages"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}
