# Only when a secret is named: an instance role that may read exactly those secrets, nothing else.

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "read_secrets" {
  count = length(local.secret_arns) > 0 ? 1 : 0
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.secret_arns
  }
}

resource "aws_iam_role" "stack" {
  count              = length(local.secret_arns) > 0 ? 1 : 0
  name_prefix        = "${var.name}-"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy" "read_secrets" {
  count  = length(local.secret_arns) > 0 ? 1 : 0
  name   = "read-stack-secrets"
  role   = aws_iam_role.stack[0].id
  policy = data.aws_iam_policy_document.read_secrets[0].json
}

resource "aws_iam_instance_profile" "stack" {
  count       = length(local.secret_arns) > 0 ? 1 : 0
  name_prefix = "${var.name}-"
  role        = aws_iam_role.stack[0].name
}
