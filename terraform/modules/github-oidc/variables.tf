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
  description = "Create the account's GitHub OIDC provider (https://token.actions.githubusercontent.com). An account holds one per URL, and most already have it (`aws iam list-open-id-connect-providers` lists it): keep false to look it up. true only in an account without one; it must then exist before infra.yml can authenticate at all, so that first apply runs from a workstation."
  type        = bool
  default     = false
}

variable "role_name" {
  description = "Name of the deploy role (role_arn in bluegreen's environment file)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.role_name))
    error_message = "role_name must be an IAM role name: 1-64 letters, digits or +=,.@_-."
  }
}

variable "max_session_duration" {
  description = "Longest session of the deploy role, in seconds (3600-43200). It must cover `bluegreen validate -e <env> --output json`'s worst_case_seconds: the release workflow requests that plus a margin, and AWS refuses a request above this."
  type        = number
  default     = 14400

  validation {
    condition     = var.max_session_duration >= 3600 && var.max_session_duration <= 43200 && floor(var.max_session_duration) == var.max_session_duration
    error_message = "max_session_duration must be a whole number of seconds from 3600 (1 h) to 43200 (12 h)."
  }
}

variable "operator_principals" {
  description = "IAM role or user ARNs, or ArnLike patterns of them, of the engineers allowed to assume the deploy role from a workstation (sts:AssumeRole) for on call: bluegreen status, rollback, unlock. For IAM Identity Center, the permission set's role, e.g. arn:aws:iam::<account>:role/aws-reserved/sso.amazonaws.com/*AWSReservedSSO_Deployer_* (the * spans the region path segment roles of an instance outside us-east-1 have). Empty: only GitHub Actions may assume it."
  type        = list(string)
  default     = []

  # aws:PrincipalArn, which the trust compares, holds the IAM role's ARN (never the sts
  # assumed-role ARN of the session) in the role's own account: no sts ARNs, no * for the account.
  validation {
    condition     = alltrue([for p in var.operator_principals : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", p))])
    error_message = "operator_principals must be IAM principal ARNs, arn:<partition>:iam::<12-digit account>:role/... or :user/... (ArnLike * and ? allowed after role/ or user/), not sts assumed-role ARNs and no * for the account: aws:PrincipalArn always holds the IAM role's ARN. For IAM Identity Center: arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/*AWSReservedSSO_Deployer_*."
  }
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

variable "test_rule_arns" {
  description = "The test routes: each region's test listener rule (the region module's test_rule_arn), whose forward bluegreen points at the new colour (elasticloadbalancing:ModifyRule)."
  type        = list(string)
}

variable "test_header_parameter_arns" {
  description = "SSM parameters (SecureString, AWS-managed key alias/aws/ssm) holding the test header's secret, which bluegreen reads with decryption (ssm:GetParameter)."
  type        = list(string)
}

variable "alarm_arns" {
  description = "CloudWatch alarm ARNs the gate reads (cloudwatch:DescribeAlarms). The default [\"*\"] (or []) means the alarms the region module creates: those named <cluster>-* in each service's region, derived from service_arns; give ARNs when the gate reads other alarms."
  type        = list(string)
  default     = ["*"]
}

variable "tags" {
  description = "Tags for the role and provider."
  type        = map(string)
  default     = {}
}
