variable "repository" {
  description = "GitHub repository allowed to deploy, as ORG/REPO."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.repository))
    error_message = "repository must be ORG/REPO."
  }
}

variable "environment" {
  description = "GitHub environment the deploy role is pinned to (its trust requires environment:<name>)."
  type        = string
}

variable "create_provider" {
  description = "Create the account's GitHub OIDC provider (only one per account; false to reuse it)."
  type        = bool
  default     = true
}

variable "role_name" {
  description = "Name of the deploy role (role_arn in bluegreen's environment file)."
  type        = string
}

variable "listener_arns" {
  description = "Listeners bluegreen may modify."
  type        = list(string)
}

variable "target_group_arns" {
  description = "Target groups bluegreen may read and register task sets on."
  type        = list(string)
}

variable "service_arns" {
  description = "ECS services whose task sets bluegreen manages."
  type        = list(string)
}

variable "task_role_arns" {
  description = "The only roles bluegreen may pass to ECS (the services' execution and task roles)."
  type        = list(string)
}

variable "repository_arns" {
  description = "ECR repositories bluegreen pushes to."
  type        = list(string)
}

variable "source_repository_arns" {
  description = "ECR repositories bluegreen may pull from (same account); cross-account reads use a role there."
  type        = list(string)
  default     = []
}

variable "lock_table_arn" {
  description = "The environment's lock and journal table."
  type        = string
}

variable "assume_role_arns" {
  description = "Roles in other accounts bluegreen may assume (e.g. preprod's ECR read role, for prod)."
  type        = list(string)
  default     = []
}

variable "alarm_arns" {
  description = "CloudWatch alarms bluegreen reads."
  type        = list(string)
  default     = ["*"]
}

variable "tags" {
  description = "Tags for the role and provider."
  type        = map(string)
  default     = {}
}
