# preprod: one region in account 111111111111. CI builds images into this account's ECR; bluegreen
# promotes them here first, and prod copies them from here.

module "us_east_1" {
  source = "../../terraform/modules/region"

  name                = var.name
  environment         = "preprod"
  region              = "us-east-1"
  vpc_cidr            = "10.40.0.0/16"
  desired_count       = 2
  test_listener_cidrs = var.test_listener_cidrs
  test_header_value   = module.environment.test_header_value
  alarm_email         = var.alarm_email
  deletion_protection = var.deletion_protection
}

data "aws_caller_identity" "current" {}

locals {
  regions = [module.us_east_1]
}

# What the environment has once, in its home region: the test route's secret (SSM parameter
# [test_traffic].parameter; every region module compares it) and the dashboard over local.regions.
module "environment" {
  source = "../../terraform/modules/environment"

  name        = var.name
  environment = "preprod"
  region      = var.home_region
  regions     = [for r in local.regions : r.metric_dimensions]
}

module "lock" {
  source = "../../terraform/modules/deploy-lock"

  name                = "bluegreen-preprod"
  region              = var.home_region
  deletion_protection = var.deletion_protection
}

module "github" {
  source = "../../terraform/modules/github-oidc"

  repository      = var.github_repository
  environment     = "preprod"
  role_name       = "bluegreen-deploy-preprod"
  create_provider = var.create_github_oidc_provider
  # 4 h: preprod's worst case (bluegreen validate -e preprod --output json: worst_case_seconds) is
  # 1420 s, prod's 4290 s; the release workflow asks for that plus a margin.
  max_session_duration       = 14400
  operator_principals        = var.operator_principals
  listener_arns              = flatten([for r in local.regions : r.listener_arns])
  target_group_arns          = flatten([for r in local.regions : r.target_group_arns])
  service_arns               = [for r in local.regions : r.service_arn]
  task_role_arns             = flatten([for r in local.regions : r.task_role_arns])
  repository_arns            = [for r in local.regions : r.repository_arn]
  test_rule_arns             = [for r in local.regions : r.test_rule_arn]
  test_header_parameter_arns = [module.environment.test_header_parameter_arn]
  lock_table_arn             = module.lock.table_arn
}

# prod's deploy role reads release images from here (bluegreen's source.role_arn in prod).
resource "aws_iam_role" "ecr_read_for_prod" {
  name = "bluegreen-ecr-read-prod"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { AWS = var.prod_deploy_role_arn }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "ecr_read_for_prod" {
  name = "read-release-images"
  role = aws_iam_role.ecr_read_for_prod.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability", "ecr:DescribeImages", "ecr:DescribeImageScanFindings"]
        Resource = module.us_east_1.repository_arn
      },
      {
        Effect   = "Allow"
        Action   = "ecr:GetAuthorizationToken"
        Resource = "*"
      },
    ]
  })
}
