variable "name" {
  description = "Application name (ECR repository, ECS service, resource prefix)."
  type        = string
}

variable "home_region" {
  description = "Region of the lock table and of the provider's global calls (IAM)."
  type        = string
}

variable "github_repository" {
  description = "GitHub repository that deploys, as ORG/REPO."
  type        = string
}

variable "image" {
  description = "Image of the first task set (bootstrap only; bluegreen owns later releases)."
  type        = string
}

variable "app_version" {
  description = "Version of that first image."
  type        = string
}

variable "test_listener_cidrs" {
  description = "CIDRs allowed on the test listener (deployers, CI egress)."
  type        = list(string)
}

variable "prod_deploy_role_arn" {
  description = "prod's deploy role, allowed to read this account's ECR repository through bluegreen-ecr-read-prod."
  type        = string
}

variable "deletion_protection" {
  description = "Protect the ALB and the lock table from deletion; the destroy workflow turns it off first."
  type        = bool
  default     = true
}
