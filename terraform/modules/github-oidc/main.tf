# GitHub Actions → AWS without keys: one deploy role whose trust is pinned to a single GitHub
# environment of a single repository (plus, optionally, the on-call operators), with a policy naming
# exactly what bluegreen touches. The account's OIDC provider for token.actions.githubusercontent.com
# is looked up, or created with create_provider (an account holds one per issuer URL).

locals {
  issuer         = "token.actions.githubusercontent.com"
  provider_arn   = var.create_provider ? aws_iam_openid_connect_provider.github[0].arn : data.aws_iam_openid_connect_provider.github[0].arn
  task_set_arns  = [for s in var.service_arns : "${replace(s, ":service/", ":task-set/")}/*"]
  all_repo_arns  = concat(var.repository_arns, var.source_repository_arns)
  push_repo_arns = var.repository_arns
}

data "aws_caller_identity" "this" {}

data "aws_partition" "this" {}

resource "aws_iam_openid_connect_provider" "github" {
  count          = var.create_provider ? 1 : 0
  url            = "https://${local.issuer}"
  client_id_list = ["sts.amazonaws.com"]
  tags           = var.tags
}

# The provider another stack (or the console) created; the plan fails here, naming the URL, when
# the account has none: then set create_provider = true.
data "aws_iam_openid_connect_provider" "github" {
  count = var.create_provider ? 0 : 1
  url   = "https://${local.issuer}"
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

  # On call: engineers assume the role from a workstation (bluegreen status, rollback, unlock).
  # The account root as principal plus aws:PrincipalArn, because a principal element cannot name
  # IAM Identity Center roles (their path is generated) or hold wildcards; ArnLike can.
  # SetSourceIdentity: when the caller's session carries a source identity (set by the identity
  # provider, it follows the engineer into the deploy role's CloudTrail events) AssumeRole fails
  # without it. TagSession: likewise for a caller that passes session tags or carries transitive ones.
  dynamic "statement" {
    for_each = length(var.operator_principals) > 0 ? [1] : []
    content {
      sid     = "Operators"
      actions = ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"]
      principals {
        type        = "AWS"
        identifiers = ["arn:${data.aws_partition.this.partition}:iam::${data.aws_caller_identity.this.account_id}:root"]
      }
      condition {
        test     = "ArnLike"
        variable = "aws:PrincipalArn"
        values   = var.operator_principals
      }
    }
  }
}

resource "aws_iam_role" "deploy" {
  name                 = var.role_name
  description          = "bluegreen deploys from ${var.repository}, GitHub environment ${var.environment}"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = var.max_session_duration
  tags                 = var.tags
}

data "aws_iam_policy_document" "deploy" {
  # Exactly the calls bluegreen makes, each on the resource AWS authorizes it on: make test's
  # tools/checks/iam_check.py derives the calls from bluegreen's code and from what the workflows
  # run as this role (aws CLI commands in their steps and scripts, the ECR login and image push),
  # and checks this block against the Service Authorization Reference, so a call without its grant,
  # or a grant nothing calls, fails.

  # Calls that support no resource-level permissions: AWS requires "*" (checkov knows them, so
  # neither CKV_AWS_356 nor CKV_AWS_111 needs a skip since RegisterTaskDefinition left this list).
  statement {
    sid = "Describe"
    actions = [
      "elasticloadbalancing:DescribeLoadBalancers",
      "elasticloadbalancing:DescribeListeners",
      "elasticloadbalancing:DescribeRules",
      "elasticloadbalancing:DescribeTargetGroups",
      "elasticloadbalancing:DescribeTargetHealth",
      "ecs:DescribeTaskDefinition",
      "ecr:GetAuthorizationToken",
    ]
    resources = ["*"]
  }

  # Production traffic: the production listeners' weighted forward. var.listener_arns also holds
  # the test listeners, whose default action bluegreen no longer changes (test traffic goes through
  # the header rule below).
  statement {
    sid       = "ShiftTraffic"
    actions   = ["elasticloadbalancing:ModifyListener"]
    resources = var.listener_arns
  }

  # Test traffic: the forward of each test listener's header rule.
  statement {
    sid       = "TestRoute"
    actions   = ["elasticloadbalancing:ModifyRule"]
    resources = var.test_rule_arns
  }

  statement {
    sid       = "Services"
    actions   = ["ecs:DescribeServices", "ecs:UpdateServicePrimaryTaskSet"]
    resources = var.service_arns
  }

  # ECS authorizes task set calls, CreateTaskSet included, on the task set: task-set/<cluster>/<service>/*.
  statement {
    sid       = "TaskSets"
    actions   = ["ecs:CreateTaskSet", "ecs:DescribeTaskSets", "ecs:UpdateTaskSet", "ecs:DeleteTaskSet"]
    resources = local.task_set_arns
  }

  # New revisions of the family the region module registers, which it names like the cluster
  # (task_family in bluegreen.toml): task-definition/<cluster>:*, in each service's region.
  statement {
    sid       = "TaskDefinitions"
    actions   = ["ecs:RegisterTaskDefinition"]
    resources = [for s in var.service_arns : replace(s, "/:service/([^/]+)/.*/", ":task-definition/$1:*")]
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

  # Reads: manifests (GET/HEAD), layers (GET, and mounting one from another repository), scans.
  statement {
    sid = "PullImages"
    actions = [
      "ecr:BatchGetImage",
      "ecr:GetDownloadUrlForLayer",
      "ecr:DescribeImageScanFindings",
    ]
    resources = local.all_repo_arns
  }

  # Writes, and the HEAD of a layer before uploading it, only where bluegreen pushes.
  statement {
    sid = "PushImages"
    actions = [
      "ecr:BatchCheckLayerAvailability",
      "ecr:InitiateLayerUpload",
      "ecr:UploadLayerPart",
      "ecr:CompleteLayerUpload",
      "ecr:PutImage",
    ]
    resources = local.push_repo_arns
  }

  # The release workflow's image job asks, before it builds, whether the version's tags are already
  # in the repository it pushes to (`aws ecr describe-images` in scripts/release-image-check.sh, as
  # preprod's role). One policy serves every environment, so every role may read the image metadata
  # of the repositories it pushes to.
  statement {
    sid       = "ReleaseImageCheck"
    actions   = ["ecr:DescribeImages"]
    resources = local.push_repo_arns
  }

  statement {
    sid       = "LockAndJournal"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"]
    resources = [var.lock_table_arn]
  }

  # The test header's secret, read with decryption; its key is the AWS-managed alias/aws/ssm, whose
  # key policy admits any principal of the account through SSM, so no kms:Decrypt is granted.
  statement {
    sid       = "TestHeader"
    actions   = ["ssm:GetParameter"]
    resources = var.test_header_parameter_arns
  }

  dynamic "statement" {
    for_each = length(var.assume_role_arns) > 0 ? [1] : []
    content {
      sid       = "ReadSourceRegistry"
      actions   = ["sts:AssumeRole"]
      resources = var.assume_role_arns
    }
  }

  # The alarms of the gate: alarm_arns, or by default (["*"]) those the region module creates,
  # which it names after the cluster (<cluster>-<colour>-5xx, …-unhealthy), in each service's region.
  statement {
    sid     = "Alarms"
    actions = ["cloudwatch:DescribeAlarms"]
    resources = length(var.alarm_arns) == 0 || contains(var.alarm_arns, "*") ? [
      for s in var.service_arns : replace(replace(s, ":ecs:", ":cloudwatch:"), "/:service/([^/]+)/.*/", ":alarm:$1-*")
    ] : var.alarm_arns
  }

  # The traffic analysis reads both colours' ALB metrics (AWS/ApplicationELB). GetMetricData has
  # no resource type in the Service Authorization Reference: it is granted on "*" or not at all,
  # and it reads metrics only.
  statement {
    sid       = "TrafficAnalysis"
    actions   = ["cloudwatch:GetMetricData"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "deploy" {
  name   = "bluegreen-deploy"
  role   = aws_iam_role.deploy.id
  policy = data.aws_iam_policy_document.deploy.json
}
