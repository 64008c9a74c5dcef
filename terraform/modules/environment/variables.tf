variable "name" {
  description = "Application name, as the region modules get it: the parameter is /bluegreen/<name>-<environment>/test-header and the dashboard <name>-<environment>."
  type        = string
}

# The region modules bound the lengths (their names have tighter limits than these).
variable "environment" {
  description = "Environment name (preprod, prod, ...), as the region modules get it."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]+$", var.name)) && can(regex("^[A-Za-z0-9_-]+$", var.environment))
    error_message = "name and environment must be letters, digits, - or _: the CloudWatch dashboard <name>-<environment> allows no other."
  }
}

variable "region" {
  description = "Home region of the environment (lock.region in bluegreen.toml): where the parameter, which bluegreen reads from there, and the dashboard live."
  type        = string
}

variable "regions" {
  description = "The metric_dimensions output of each of the environment's region modules, in the order the dashboard shows them."
  type = list(object({
    region        = string
    load_balancer = string
    target_groups = map(string)
    cluster       = string
    service       = string
  }))
}

variable "tags" {
  description = "Tags for the parameter (a dashboard takes none)."
  type        = map(string)
  default     = {}
}
