# GitHub Actions → AWS without keys: the account's OIDC provider for token.actions.githubusercontent.com
# and one deploy role whose trust is pinned to a single GitHub environment of a single repository,
# with a policy naming exactly what bluegreen touches.

locals {
  issuer         = "token.actions.githubusercontent.com"
  provider_arn   = var.create_provider ? aws_iam_openid_connect_provider.github[0].arn : "arn:aws:iam::${data.aws_caller_identity.this.account_id}:oidc-provider/${local.issuer}"
  task_set_arns  = [for s in var.service_arns : "${replace(s, ":service/", ":task-set/")}/*"]
  all_repo_arns  = concat(var.repository_arns, var.source_repository_arns)
  push_repo_arns = var.repository_arns
}

data "aws_caller_identity" "this" {}

resource "aws_iam_openid_connect_provider" "github" {
  count          = var.create_provider ? 1 : 0
  url            = "https://${local.issuer}"
  client_id_list = ["sts.amazonaws.com"]
  tags           = var.tags
}

data "aws_iam_policy_document" "trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [local.provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
    # Only jobs that run in this GitHub environment (with its required reviewers) get the role.
    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:sub"
      values   = ["repo:${var.repository}:environment:${var.environment}"]
    }
  }
}

resource "aws_iam_role" "deploy" {
  name                 = var.role_name
  description          = "bluegreen deploys from ${var.repository}, GitHub environment ${var.environment}"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = 7200
  tags                 = var.tags
}

data "aws_iam_policy_document" "deploy" {
  # Read calls that AWS does not scope to resources.
  statement {
    sid = "Describe"
    #checkov:skip=CKV_AWS_356:Describe*, RegisterTaskDefinition and GetAuthorizationToken support no resource-level permissions
    #checkov:skip=CKV_AWS_111:RegisterTaskDefinition supports no resource-level permissions; it is a write of a new revision only
    actions = [
      "elasticloadbalancing:DescribeLoadBalancers",
      "elasticloadbalancing:DescribeListeners",
      "elasticloadbalancing:DescribeTargetGroups",
      "elasticloadbalancing:DescribeTargetHealth",
      "ecs:DescribeTaskDefinition",
      "ecs:RegisterTaskDefinition",
      "ecr:GetAuthorizationToken",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "ShiftTraffic"
    actions   = ["elasticloadbalancing:ModifyListener"]
    resources = var.listener_arns
  }

  statement {
    sid       = "TaskSets"
    actions   = ["ecs:DescribeServices", "ecs:DescribeTaskSets", "ecs:CreateTaskSet", "ecs:UpdateServicePrimaryTaskSet"]
    resources = var.service_arns
  }

  statement {
    sid       = "TaskSetChanges"
    actions   = ["ecs:UpdateTaskSet", "ecs:DeleteTaskSet", "ecs:DescribeTaskSets"]
    resources = local.task_set_arns
  }

  statement {
    sid       = "PassOnlyTaskRoles"
    actions   = ["iam:PassRole"]
    resources = var.task_role_arns
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  statement {
    sid = "PullImages"
    actions = [
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
      "ecr:BatchCheckLayerAvailability",
      "ecr:DescribeImages",
      "ecr:DescribeImageScanFindings",
    ]
    resources = local.all_repo_arns
  }

  statement {
    sid = "PushImages"
    actions = [
      "ecr:InitiateLayerUpload",
      "ecr:UploadLayerPart",
      "ecr:CompleteLayerUpload",
      "ecr:PutImage",
    ]
    resources = local.push_repo_arns
  }

  statement {
    sid       = "LockAndJournal"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"]
    resources = [var.lock_table_arn]
  }

  dynamic "statement" {
    for_each = length(var.assume_role_arns) > 0 ? [1] : []
    content {
      sid       = "ReadSourceRegistry"
      actions   = ["sts:AssumeRole"]
      resources = var.assume_role_arns
    }
  }

  statement {
    sid       = "Alarms"
    actions   = ["cloudwatch:DescribeAlarms"]
    resources = var.alarm_arns
  }
}

resource "aws_iam_role_policy" "deploy" {
  name   = "bluegreen-deploy"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.deploy.json
}
