variable "name" {
  description = "Table name; bluegreen's environment file names it as lock.table."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{3,255}$", var.name))
    error_message = "name must be 3-255 letters, digits, _ . or -."
  }
}

variable "region" {
  description = "Home region of the environment (lock.region in the environment file)."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for the table; null uses an AWS-owned key."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for the table."
  type        = map(string)
  default     = {}
}

variable "deletion_protection" {
  description = "Protect the table from deletion; the destroy workflow turns it off first."
  type        = bool
  default     = true
}
