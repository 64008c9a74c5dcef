variable "name" {
  description = "Application name: the ECS service and the ECR repository; every other resource is named <name>-<environment>[-suffix]."
  type        = string

  # ECR repository names allow no doubled or trailing hyphen; ALB names must not end with one.
  validation {
    condition     = length(var.name) >= 2 && can(regex("^[a-z][a-z0-9]*(-[a-z0-9]+)*$", var.name))
    error_message = "name must be at least 2 lowercase letters, digits or single hyphens, starting with a letter and not ending with a hyphen."
  }

  validation {
    condition     = !startswith("${var.name}-", "internal-")
    error_message = "name must not be \"internal\" or begin with \"internal-\": the ALB <name>-<environment> may not begin with \"internal-\"."
  }
}

variable "environment" {
  description = "Environment name (preprod, prod, ...), part of every resource name."
  type        = string

  validation {
    condition     = length(var.environment) >= 2 && can(regex("^[a-z][a-z0-9]*(-[a-z0-9]+)*$", var.environment))
    error_message = "environment must be at least 2 lowercase letters, digits or single hyphens, starting with a letter and not ending with a hyphen."
  }

  # The longest name with the tightest limit: target groups (and the ALB) take at most 32.
  validation {
    condition     = length("${var.name}-${var.environment}-green") <= 32
    error_message = "<name>-<environment>-green, the green target group's name (here ${var.name}-${var.environment}-green), must be at most 32 characters: shorten name or environment."
  }
}

variable "region" {
  description = "AWS region of this stack (AWS provider v6 per-resource region)."
  type        = string

  # Part of IAM role names (<name>-<environment>-<region>-execution, at most 64): 20 leaves room
  # for every region code (the longest today, us-isof-south-1, has 15).
  validation {
    condition     = length(var.region) <= 20 && can(regex("^[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}$", var.region))
    error_message = "region must be an AWS region code such as eu-west-1, at most 20 characters (it is part of the IAM role <name>-<environment>-<region>-execution, at most 64)."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; two public and two private /20 subnets are carved from it."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr must be a valid CIDR block."
  }
}

variable "private_tasks" {
  description = "Run tasks in private subnets behind a NAT gateway (about 32 USD/month per AZ). false runs them in public subnets with a security group that admits only the ALB."
  type        = bool
  default     = false
}

variable "container_port" {
  description = "Port the service listens on inside the container."
  type        = number
  default     = 8080

  validation {
    condition     = var.container_port > 0 && var.container_port < 65536
    error_message = "container_port must be a TCP port."
  }
}

variable "listener_port" {
  description = "Production listener port when there is no certificate (HTTP)."
  type        = number
  default     = 80
}

variable "test_listener_port" {
  description = "Test listener port: a fixed 404 unless the request carries the test header (test_header_name) with its secret value."
  type        = number
  default     = 8080

  validation {
    condition     = var.test_listener_port != 443 && var.test_listener_port > 0 && var.test_listener_port < 65536
    error_message = "test_listener_port must be a TCP port other than 443."
  }
}

variable "test_listener_cidrs" {
  description = "CIDRs allowed to reach the test listener. Anywhere by default: GitHub-hosted runners have no fixed addresses, and a request without the secret test header gets a fixed 404, while one with it reaches only the colour that is not yet live. Narrow it to your deployers' and CI egress for defence in depth."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.test_listener_cidrs : can(cidrnetmask(c))])
    error_message = "test_listener_cidrs must be valid IPv4 CIDRs."
  }
}

variable "test_header_name" {
  description = "HTTP header of the test route: the test listener forwards a request to a colour only when this header carries test_header_value ([test_traffic].header in bluegreen.toml)."
  type        = string
  default     = "X-Bluegreen-Test"

  validation {
    condition     = can(regex("^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,40}$", var.test_header_name))
    error_message = "test_header_name must be an HTTP header name (RFC 7230 token characters) of at most 40 characters, as an ALB http-header condition requires."
  }
}

variable "test_header_value" {
  description = "Secret value of the test header (terraform/modules/environment generates it and keeps it in SSM Parameter Store for bluegreen). Letters and digits only: ALB header conditions compare case-insensitively and treat * and ? as wildcards."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^[A-Za-z0-9]{16,128}$", var.test_header_value))
    error_message = "test_header_value must be 16-128 letters and digits (an ALB condition value holds at most 128 characters)."
  }
}

variable "ingress_cidrs" {
  description = "CIDRs allowed to reach the production listener."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "certificate_arn" {
  description = "ACM certificate for HTTPS on 443 (with an HTTP to HTTPS redirect on 80); null serves HTTP on listener_port."
  type        = string
  default     = null
}


variable "desired_count" {
  description = "Tasks per task set (each colour runs this many while it serves)."
  type        = number
  default     = 2

  validation {
    condition     = var.desired_count >= 1
    error_message = "desired_count must be at least 1."
  }
}

variable "task_cpu" {
  description = "Fargate task CPU units."
  type        = number
  default     = 256
}

variable "task_memory" {
  description = "Fargate task memory in MiB."
  type        = number
  default     = 512
}

variable "log_retention_days" {
  description = "Retention of the service's and the flow logs' CloudWatch log groups."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

variable "ecr_keep_images" {
  description = "Tagged images the repository keeps (lifecycle policy); rollbacks need the previous ones."
  type        = number
  default     = 30
}

variable "create_repository" {
  description = "Create the ECR repository in this region (false when another stack owns it: then set repository_url)."
  type        = bool
  default     = true
}

variable "repository_url" {
  description = "URL of this region's ECR repository when create_repository = false; the task definition template names it (with the placeholder tag :unreleased, which never runs)."
  type        = string
  default     = null

  validation {
    condition     = var.create_repository || can(regex("^[^/]+/.+$", var.repository_url))
    error_message = "repository_url is required when create_repository = false: REGISTRY/REPOSITORY, e.g. 222222222222.dkr.ecr.us-east-1.amazonaws.com/hello."
  }
}

variable "autoscaling" {
  description = "Target-tracking CPU autoscaling of the service between min and max tasks; null disables it."
  type = object({
    min        = number
    max        = number
    cpu_target = number
  })
  default = null
}

variable "alarm_email" {
  description = "E-mail address subscribed to this region's alarm topic (SNS asks it to confirm); null subscribes nobody."
  type        = string
  default     = null
}

variable "alarm_5xx_threshold" {
  description = "Target 5xx responses per minute that put a colour's 5xx alarm in ALARM."
  type        = number
  default     = 5
}

variable "kms_key_arn" {
  description = "KMS key for logs and ECR encryption; null uses AWS-managed keys."
  type        = string
  default     = null
}

variable "access_logs_bucket" {
  description = "S3 bucket for ALB access logs; null disables them."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Protect the ALB from deletion; the destroy workflow turns it off first."
  type        = bool
  default     = true
}
