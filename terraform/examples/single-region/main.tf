# The smallest complete use of the modules: one region, its lock table, the test route's secret and a
# GitHub deploy role (reusing the account's GitHub OIDC provider; -var create_github_oidc_provider=true
# in an account without one).
# terraform init && terraform apply -var 'github_repository=ORG/REPO'
# Then bluegreen's environment file for it: terraform output -json | bluegreen init -e demo

terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6, < 4.0"
    }
  }
}

provider "aws" {
  region = "us-east-1"
}

variable "github_repository" {
  description = "GitHub repository that deploys, as ORG/REPO."
  type        = string
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub OIDC provider: only where `aws iam list-open-id-connect-providers` shows none (an account holds one)."
  type        = bool
  default     = false
}

resource "random_password" "test_header" {
  length  = 40
  special = false
}

resource "aws_ssm_parameter" "test_header" {
  #checkov:skip=CKV_AWS_337:AWS-managed key alias/aws/ssm on purpose: the value is also in plain text in the listener rule's condition and in Terraform's state, so a CMK would protect nothing more; the secret keeps the internet, not the account's readers, away from the colour under test
  region = "us-east-1"
  name   = "/bluegreen/hello-demo/test-header"
  type   = "SecureString"
  value  = random_password.test_header.result
}

module "region" {
  source = "../../modules/region"

  name              = "hello"
  environment       = "demo"
  region            = "us-east-1"
  test_header_value = random_password.test_header.result
}

module "lock" {
  source = "../../modules/deploy-lock"

  name   = "bluegreen-demo"
  region = "us-east-1"
}

module "github" {
  source = "../../modules/github-oidc"

  repository                 = var.github_repository
  environment                = "demo"
  role_name                  = "bluegreen-deploy-demo"
  create_provider            = var.create_github_oidc_provider
  listener_arns              = module.region.listener_arns
  target_group_arns          = module.region.target_group_arns
  service_arns               = [module.region.service_arn]
  task_role_arns             = module.region.task_role_arns
  repository_arns            = [module.region.repository_arn]
  test_rule_arns             = [module.region.test_rule_arn]
  test_header_parameter_arns = [aws_ssm_parameter.test_header.arn]
  lock_table_arn             = module.lock.table_arn
}

output "alb_dns_name" {
  description = "The production endpoint."
  value       = module.region.alb_dns_name
}

output "deploy_role_arn" {
  description = "Role for the GitHub environment demo."
  value       = module.github.role_arn
}

data "aws_caller_identity" "current" {}

output "bluegreen" {
  description = "Everything bluegreen's environment file names: `terraform output -json | bluegreen init -e demo` writes it."
  value = {
    account_id = data.aws_caller_identity.current.account_id
    role_arn   = module.github.role_arn
    source = {
      region     = module.region.metric_dimensions.region
      account_id = data.aws_caller_identity.current.account_id
      repository = module.region.names.repository
      role_arn   = null
    }
    test_header_parameter = aws_ssm_parameter.test_header.name
    lock                  = { table = module.lock.table_name, region = "us-east-1" }
    regions               = { (module.region.metric_dimensions.region) = module.region.names }
  }
}
