variable "cluster_name" {
  description = "EKS cluster Karpenter provisions nodes for (must run in compute_mode = \"karpenter\")."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,37}[a-zA-Z0-9]$", var.cluster_name))
    error_message = "cluster_name must start with a letter and be 2-39 letters, digits or dashes."
  }
}

variable "namespace" {
  description = "Namespace the Karpenter Helm chart is installed in."
  type        = string
  default     = "kube-system"
}

variable "service_account" {
  description = "Service account of the Karpenter controller (the chart's default is `karpenter`)."
  type        = string
  default     = "karpenter"
}

variable "queue_message_retention_seconds" {
  description = "How long an interruption event waits in SQS. Spot notices give 2 minutes: older events are useless."
  type        = number
  default     = 300

  validation {
    condition     = var.queue_message_retention_seconds >= 60 && var.queue_message_retention_seconds <= 1209600
    error_message = "queue_message_retention_seconds must be between 60 and 1209600."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
