# Only when the VM needs an AWS API: an instance role that may read exactly the named secrets, and write
# backups under hybrid-ai-stack/ in the named bucket; nothing else.

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "stack" {
  count = local.needs_role ? 1 : 0
  dynamic "statement" {
    for_each = length(local.secret_arns) > 0 ? [1] : []
    content {
      actions   = ["secretsmanager:GetSecretValue"]
      resources = local.secret_arns
    }
  }
  dynamic "statement" {
    for_each = length(local.backup_arns) > 0 ? [1] : []
    content {
      actions   = ["s3:PutObject"]
      resources = local.backup_arns
    }
  }
}

resource "aws_iam_role" "stack" {
  count              = local.needs_role ? 1 : 0
  name_prefix        = "${var.name}-"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy" "stack" {
  count  = local.needs_role ? 1 : 0
  name   = "hybrid-ai-stack-vm"
  role   = aws_iam_role.stack[0].id
  policy = data.aws_iam_policy_document.stack[0].json
}

resource "aws_iam_instance_profile" "stack" {
  count       = local.needs_role ? 1 : 0
  name_prefix = "${var.name}-"
  role        = aws_iam_role.stack[0].name
}
