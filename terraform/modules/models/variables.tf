variable "bucket_name" {
  description = "Name of the model-weights bucket. Null derives `<cluster_name>-models-<account id>` (bucket names are global)."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 lowercase letters, digits, dots or dashes."
  }
}

variable "cluster_name" {
  description = "EKS cluster whose engine pods read the bucket (Pod Identity association)."
  type        = string
}

variable "namespace" {
  description = "Namespace of the engine pods."
  type        = string
  default     = "inferstack"
}

variable "service_account" {
  description = "Service account of the engine pods."
  type        = string
  default     = "vllm-engine"
}

variable "gateway_service_account" {
  description = "Service account of the gateway pods (they read the tokenizer files only)."
  type        = string
  default     = "inferstack-gateway"
}

variable "tokenizer_files" {
  description = "File names the gateway may read below read_prefixes: a model's tokenizer files (the gateway's tokenizer-sync init container, inferstack_fleet.manifests.TOKENIZER_FILES), never its weights."
  type        = list(string)
  default = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "processor_config.json",
    "preprocessor_config.json",
  ]

  validation {
    condition     = length(var.tokenizer_files) > 0 && alltrue([for f in var.tokenizer_files : can(regex("^[A-Za-z0-9._-]+$", f))])
    error_message = "tokenizer_files must be plain file names (no wildcards or slashes)."
  }
}

variable "read_prefixes" {
  description = "Key prefixes engines may read (for example [\"models/\"]). [\"\"] means the whole bucket."
  type        = list(string)
  default     = [""]

  validation {
    condition     = length(var.read_prefixes) > 0 && alltrue([for p in var.read_prefixes : !startswith(p, "/")])
    error_message = "read_prefixes must be non-empty and must not start with '/'."
  }
}

variable "noncurrent_version_expiry_days" {
  description = "Days an overwritten or deleted object version is kept (undo window for a bad upload)."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiry_days >= 1
    error_message = "noncurrent_version_expiry_days must be at least 1."
  }
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete a bucket that still holds weights."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
