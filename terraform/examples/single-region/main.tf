# The smallest complete use of the modules: one region, its lock table and a GitHub deploy role.
# terraform init && terraform apply -var 'github_repository=ORG/REPO' -var 'test_listener_cidrs=["203.0.113.10/32"]'

terraform {
  required_version = ">= 1.10"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0, < 7.0"
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

variable "test_listener_cidrs" {
  description = "CIDRs allowed on the test listener."
  type        = list(string)
}

module "region" {
  source = "../../modules/region"

  name                = "hello"
  environment         = "demo"
  region              = "us-east-1"
  image               = "public.ecr.aws/docker/library/busybox:stable"
  app_version         = "bootstrap"
  test_listener_cidrs = var.test_listener_cidrs
}

module "lock" {
  source = "../../modules/deploy-lock"

  name   = "bluegreen-demo"
  region = "us-east-1"
}

module "github" {
  source = "../../modules/github-oidc"

  repository        = var.github_repository
  environment       = "demo"
  role_name         = "bluegreen-deploy-demo"
  listener_arns     = module.region.listener_arns
  target_group_arns = module.region.target_group_arns
  service_arns      = [module.region.service_arn]
  task_role_arns    = module.region.task_role_arns
  repository_arns   = [module.region.repository_arn]
  lock_table_arn    = module.lock.table_arn
}

output "alb_dns_name" {
  description = "The production endpoint."
  value       = module.region.alb_dns_name
}

output "deploy_role_arn" {
  description = "Role for the GitHub environment demo."
  value       = module.github.role_arn
}
