# What differs between environments. envs/dev and envs/prod set these in their one module call;
# the values an operator supplies per account (region, CIDRs, admins, repository) come from their tfvars.

variable "environment" {
  description = "Environment name (dev, prod): the GitHub environment the CI apply role trusts and the state key envs/<environment>/."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,15}$", var.environment))
    error_message = "environment must be 2-16 lowercase letters, digits or dashes."
  }
}

variable "name" {
  description = "EKS cluster name; also the Karpenter discovery tag value and the prefix of most names."
  type        = string
}

variable "namespace" {
  description = "Namespace of the gateway and engines (k8s/overlays/aws-gpu); Pod Identity associations point at it."
  type        = string
  default     = "inferstack"
}

# Network

variable "vpc_cidr" {
  description = "VPC CIDR (/16 to /20); give every environment its own so they can be peered."
  type        = string
}

variable "availability_zones" {
  description = "Pin the three AZs (for example [\"us-east-1a\", \"us-east-1b\", \"us-east-1d\"]) so the subnet layout never depends on the region's zone list. Null: the region's first three."
  type        = list(string)
  default     = null
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all AZs (cheaper; an AZ outage cuts egress) instead of one per AZ."
  type        = bool
}

variable "flow_log_retention_days" {
  description = "Days to keep VPC flow logs (REJECT only)."
  type        = number
  default     = 30
}

# Cluster

variable "kubernetes_version" {
  description = "Kubernetes minor version; must be in EKS standard support (terraform/eks-support-calendar.csv, checked by terraform/scripts/eks_support.py)."
  type        = string
}

variable "compute_mode" {
  description = "\"auto\" (EKS Auto Mode) or \"karpenter\" (self-managed Karpenter, no Auto Mode fee on GPU instances). See modules/eks."
  type        = string

  validation {
    condition     = contains(["auto", "karpenter"], var.compute_mode)
    error_message = "compute_mode must be \"auto\" or \"karpenter\"."
  }
}

variable "karpenter_version" {
  description = "Karpenter release of the controller and karpenter-crd charts (output karpenter_version); the controller policy in modules/karpenter is written for it."
  type        = string

  validation {
    condition     = can(regex("^1\\.[0-9]+\\.[0-9]+$", var.karpenter_version))
    error_message = "karpenter_version must be a v1 release such as 1.14.1 (modules/karpenter is written for the v1 API)."
  }
}

variable "public_access_cidrs" {
  description = "CIDRs allowed to reach the Kubernetes API (office / VPN / CI egress)."
  type        = list(string)
}

variable "log_retention_days" {
  description = "Days to keep control-plane logs (a CloudWatch retention value)."
  type        = number
}

variable "system_node_group" {
  description = "Karpenter mode: the managed node group for Karpenter and the critical add-ons (modules/eks fills what is left out)."
  type = object({
    instance_types = optional(list(string))
    min_size       = optional(number)
    desired_size   = optional(number)
    max_size       = optional(number)
  })
  default = {}
}

variable "admin_principal_arns" {
  description = "IAM roles or users given cluster-admin through access entries (in addition to whoever runs apply)."
  type        = list(string)
  default     = []
}

variable "gpu_instance_types" {
  description = "GPU instance types the Kubernetes GPU NodePool may use; every one must fit the engine's requests (output engine_resources)."
  type        = list(string)

  validation {
    condition     = alltrue([for t in var.gpu_instance_types : can(regex("^(g4dn|g5|g6|g6e|gr6|p4d|p4de|p5|p5e|p5en|p6-b200)\\.[0-9a-z]+$", t))])
    error_message = "gpu_instance_types must be NVIDIA GPU instance types (g4dn, g5, g6, g6e, p4d, p5, ...)."
  }
}

# Weights

variable "models_bucket" {
  description = "Model-weights bucket: force_destroy lets `terraform destroy` delete it with weights inside (dev); read_prefixes are the key prefixes engines may read ([\"\"]: all); noncurrent_version_expiry_days is the undo window of an overwritten upload."
  type = object({
    force_destroy                  = optional(bool, false)
    read_prefixes                  = optional(list(string), [""])
    noncurrent_version_expiry_days = optional(number, 30)
  })
  default = {}
}

# Images and CI

variable "registry_prefix" {
  description = "ECR repositories <registry_prefix>/gateway and <registry_prefix>/engine, created by terraform/shared for every environment."
  type        = string
  default     = "inferstack"
}

variable "github_repository" {
  description = "owner/name of the repository whose workflows plan and apply this environment. Null: no CI roles."
  type        = string
  default     = null
}

variable "state_bucket_name" {
  description = "Terraform state bucket (bootstrap output), for the CI roles' state access. Required with github_repository."
  type        = string
  default     = null

  validation {
    condition     = var.github_repository == null || var.state_bucket_name != null
    error_message = "Set state_bucket_name when github_repository is set."
  }
}

# Optional pieces

variable "domain_name" {
  description = "Public name of the gateway (api.example.com): an ACM certificate for its Ingress and output gateway_url. Null: the ALB's own hostname, plain HTTP."
  type        = string
  default     = null
}

variable "route53_zone_id" {
  description = "Route 53 zone of domain_name, for the certificate's DNS validation records. Null: add them to your DNS (output acm_validation_records)."
  type        = string
  default     = null
}

variable "elasticache_enabled" {
  description = "Gateway shared state in ElastiCache for Valkey (output redis_url). False: the in-cluster Redis run by the k8s side."
  type        = bool
  default     = false
}
