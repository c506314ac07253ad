variable "name" {
  description = "Replication group, subnet group and security group name, for example inferstack-prod."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,39}$", var.name))
    error_message = "name must be at most 40 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC of the cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (the cluster's)."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Security groups allowed to connect (the cluster's node security group)."
  type        = list(string)
}

variable "node_type" {
  description = "Cache node type. The gateway keeps counters and short-lived keys: small is enough."
  type        = string
  default     = "cache.t4g.small"
}

variable "replicas" {
  description = "Read replicas (0 = one node, no failover; 1+ = Multi-AZ with automatic failover)."
  type        = number
  default     = 1

  validation {
    condition     = var.replicas >= 0 && var.replicas <= 5
    error_message = "replicas must be between 0 and 5."
  }
}

variable "engine_version" {
  description = "Valkey major.minor version."
  type        = string
  default     = "8.0"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
