variable "name" {
  description = "Application name; every resource is named <name>-<environment>[-suffix]."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Environment name (preprod, prod, ...), part of every resource name."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,9}$", var.environment))
    error_message = "environment must be 2-10 lowercase letters, digits or hyphens."
  }
}

variable "region" {
  description = "AWS region of this stack (AWS provider v6 per-resource region)."
  type        = string
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
  description = "Test listener port, reachable only from test_listener_cidrs."
  type        = number
  default     = 8080

  validation {
    condition     = var.test_listener_port != 443 && var.test_listener_port > 0 && var.test_listener_port < 65536
    error_message = "test_listener_port must be a TCP port other than 443."
  }
}

variable "test_listener_cidrs" {
  description = "CIDRs allowed to reach the test listener (the deployer and CI egress)."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.test_listener_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "test_listener_cidrs must be valid CIDRs and must not be 0.0.0.0/0."
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

variable "image" {
  description = "Initial image of the service (the first task set); bluegreen replaces it on every promote."
  type        = string
}

variable "app_version" {
  description = "Version of the initial image, exposed to the app as APP_VERSION."
  type        = string
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
  description = "Create the ECR repository in this region (false when another stack owns it)."
  type        = bool
  default     = true
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
