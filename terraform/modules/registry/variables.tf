variable "name_prefix" {
  description = "Repository names are <name_prefix>/<repository>, for example inferstack-dev/gateway."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]+(?:[._-][a-z0-9]+)*$", var.name_prefix))
    error_message = "name_prefix must be lowercase letters, digits and . _ - separators."
  }
}

variable "repositories" {
  description = "Repositories to create, by short name. The environments use gateway and engine."
  type        = list(string)
  default     = ["gateway", "engine"]

  validation {
    condition     = length(var.repositories) > 0 && alltrue([for r in var.repositories : can(regex("^[a-z0-9]+(?:[._-][a-z0-9]+)*$", r))])
    error_message = "repositories must be non-empty lowercase names."
  }
}

variable "mirrors" {
  description = "Upstream repositories mirrored as <name_prefix>/mirror/<upstream>, written with their registry host (docker.io/valkey/valkey, public.ecr.aws/aws-cli/aws-cli): no tag, no digest. The pipeline copies scanned digests into them."
  type        = list(string)
  default     = []

  validation {
    # ECR's repository name grammar, one path component at a time; a registry host is a component too.
    condition     = alltrue([for m in var.mirrors : can(regex("^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)+$", m)) && length(m) <= 200])
    error_message = "mirrors must be lowercase upstream repository paths with their registry host (docker.io/valkey/valkey), without tag or digest."
  }
}

variable "keep_tagged_images" {
  description = "Most recent tagged images kept per repository; older ones expire (roll back within this window)."
  type        = number
  default     = 30

  validation {
    condition     = var.keep_tagged_images >= 5
    error_message = "keep_tagged_images below 5 leaves too little to roll back to."
  }
}

variable "untagged_expiry_days" {
  description = "Days after which untagged images (failed pushes, superseded multi-arch parts) are deleted."
  type        = number
  default     = 7

  validation {
    condition     = var.untagged_expiry_days >= 1
    error_message = "untagged_expiry_days must be at least 1."
  }
}

variable "kms_key_arn" {
  description = "KMS key for image encryption. Null uses the AWS-managed aws/ecr key (KMS either way)."
  type        = string
  default     = null
}

variable "force_delete" {
  description = "Allow `terraform destroy` to delete repositories that still hold images. Keep false outside throwaway environments."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
