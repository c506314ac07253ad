variable "bucket" {
  description = "Name of the bucket to protect (the caller's aws_s3_bucket)."
  type        = string
}

variable "kms_key_arn" {
  description = "Customer KMS key for default encryption. Null: the AWS-managed aws/s3 key (nothing of ours to lose: the state bucket)."
  type        = string
  default     = null
}

variable "noncurrent_version_expiry_days" {
  description = "Days an overwritten or deleted object version is kept: the undo window."
  type        = number

  validation {
    condition     = var.noncurrent_version_expiry_days >= 1
    error_message = "noncurrent_version_expiry_days must be at least 1."
  }
}
