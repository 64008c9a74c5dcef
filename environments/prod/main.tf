# prod: account 222222222222, three regions in two waves (bluegreen.toml: us-east-1, then
# eu-west-1 and ap-southeast-2). Images are promoted by digest from preprod's ECR.

module "us_east_1" {
  source = "../../terraform/modules/region"

  name                = var.name
  environment         = "prod"
  region              = "us-east-1"
  vpc_cidr            = "10.50.0.0/16"
  desired_count       = 2
  test_listener_cidrs = var.test_listener_cidrs
  test_header_value   = module.environment.test_header_value
  alarm_email         = var.alarm_email
  deletion_protection = var.deletion_protection
  autoscaling         = { min = 2, max = 4, cpu_target = 60 }
}

module "eu_west_1" {
  source = "../../terraform/modules/region"

  name                = var.name
  environment         = "prod"
  region              = "eu-west-1"
  vpc_cidr            = "10.51.0.0/16"
  desired_count       = 2
  test_listener_cidrs = var.test_listener_cidrs
  test_header_value   = module.environment.test_header_value
  alarm_email         = var.alarm_email
  deletion_protection = var.deletion_protection
  autoscaling         = { min = 2, max = 4, cpu_target = 60 }
}

module "ap_southeast_2" {
  source = "../../terraform/modules/region"

  name                = var.name
  environment         = "prod"
  region              = "ap-southeast-2"
  vpc_cidr            = "10.52.0.0/16"
  desired_count       = 2
  test_listener_cidrs = var.test_listener_cidrs
  test_header_value   = module.environment.test_header_value
  alarm_email         = var.alarm_email
  deletion_protection = var.deletion_protection
  autoscaling         = { min = 2, max = 4, cpu_target = 60 }
}

data "aws_caller_identity" "current" {}

locals {
  # preprod's repository ARN as [region, account, name] (the bluegreen output's source).
  source_repository = regex("^arn:[^:]+:ecr:([a-z0-9-]+):([0-9]{12}):repository/(.+)$", var.source_repository_arn)
  regions           = [module.us_east_1, module.eu_west_1, module.ap_southeast_2]
}

# What the environment has once, in its home region: the test route's secret (SSM parameter
# [test_traffic].parameter; every region module compares it) and the dashboard over local.regions.
module "environment" {
  source = "../../terraform/modules/environment"

  name        = var.name
  environment = "prod"
  region      = var.home_region
  regions     = [for r in local.regions : r.metric_dimensions]
}

module "lock" {
  source = "../../terraform/modules/deploy-lock"

  name                = "bluegreen-prod"
  region              = var.home_region
  deletion_protection = var.deletion_protection
}

module "github" {
  source = "../../terraform/modules/github-oidc"

  repository      = var.github_repository
  environment     = "production"
  role_name       = "bluegreen-deploy-prod"
  create_provider = var.create_github_oidc_provider
  # 4 h: prod's worst case (bluegreen validate -e prod --output json: worst_case_seconds) is 4290 s:
  # two waves of 10m ready + 30s test + bakes 5m, 5m, 10m (+ a 5s poll each), plus 10m for the
  # copy and cleanup. The release workflow asks for that plus a margin.
  max_session_duration       = 14400
  operator_principals        = var.operator_principals
  listener_arns              = flatten([for r in local.regions : r.listener_arns])
  target_group_arns          = flatten([for r in local.regions : r.target_group_arns])
  service_arns               = [for r in local.regions : r.service_arn]
  task_role_arns             = flatten([for r in local.regions : r.task_role_arns])
  repository_arns            = [for r in local.regions : r.repository_arn]
  source_repository_arns     = [var.source_repository_arn]
  assume_role_arns           = [var.source_read_role_arn]
  test_rule_arns             = [for r in local.regions : r.test_rule_arn]
  test_header_parameter_arns = [module.environment.test_header_parameter_arn]
  lock_table_arn             = module.lock.table_arn
}
