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

variable "create_github_oidc_provider" {
  description = "Create this account's GitHub OIDC provider (token.actions.githubusercontent.com). Most accounts already have one, and an account holds only one: `aws iam list-open-id-connect-providers` lists it; then keep false and the deploy role uses it. true only in an account without one; infra.yml needs it to authenticate at all, so that first apply runs from a workstation."
  type        = bool
  default     = false
}

variable "operator_principals" {
  description = "IAM role or user ARNs (arn:<partition>:iam::<account>:role/... or :user/..., no sts ARNs) or ArnLike patterns of them, of the engineers who may assume the deploy role from a workstation (on call: bluegreen status, rollback, unlock), e.g. arn:aws:iam::222222222222:role/aws-reserved/sso.amazonaws.com/*AWSReservedSSO_Deployer_*. Empty: GitHub Actions only."
  type        = list(string)
  default     = []
}

variable "test_listener_cidrs" {
  description = "CIDRs allowed on the test listeners. Anywhere by default: only requests with the secret test header get past their fixed 404, and they reach only the colour not yet live."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "alarm_email" {
  description = "E-mail address subscribed to every region's alarm topic; null subscribes nobody."
  type        = string
  default     = null
}

variable "source_read_role_arn" {
  description = "preprod's ECR read role that prod's deploy role assumes to copy images."
  type        = string
}

variable "source_repository_arn" {
  description = "preprod's ECR repository images are promoted from."
  type        = string

  validation {
    condition     = can(regex("^arn:[^:]+:ecr:[a-z0-9-]+:[0-9]{12}:repository/.+$", var.source_repository_arn))
    error_message = "source_repository_arn must be an ECR repository ARN: arn:aws:ecr:REGION:ACCOUNT:repository/NAME."
  }
}

variable "deletion_protection" {
  description = "Protect the ALB and the lock table from deletion; the destroy workflow turns it off first."
  type        = bool
  default     = true
}
