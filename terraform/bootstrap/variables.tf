variable "region" {
  description = "Region of the state bucket (use the region of your clusters)."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like us-east-1."
  }
}

variable "bucket_name" {
  description = "State bucket name. Null derives `inferstack-tfstate-<account id>-<region>` (bucket names are global)."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 lowercase letters, digits, dots or dashes."
  }
}

variable "noncurrent_version_expiry_days" {
  description = "Days old state versions are kept: your undo window for a broken state file."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_expiry_days >= 7
    error_message = "Keep old state versions at least 7 days."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = { project = "inferstack" }
}
