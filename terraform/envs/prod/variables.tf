# What an operator supplies for this environment (terraform.tfvars, or TF_VAR_github_repository from
# the pipeline). The environment's shape is in main.tf; modules/platform validates every value.

variable "region" {
  description = "AWS region. Pick one with GPU capacity for gpu_instance_types (us-east-1, us-west-2, ...)."
  type        = string
  default     = "us-east-1"
}

variable "availability_zones" {
  description = "Pin the three AZs (for example [\"us-east-1a\", \"us-east-1b\", \"us-east-1d\"]) so the subnet layout never depends on the region's zone list. Null: the region's first three."
  type        = list(string)
  default     = null
}

variable "public_access_cidrs" {
  description = "CIDRs allowed to reach the Kubernetes API (office / VPN / CI egress). No default in prod: decide."
  type        = list(string)
}

variable "admin_principal_arns" {
  description = "IAM roles or users given cluster-admin through access entries (in addition to whoever runs apply)."
  type        = list(string)
  default     = []
}

variable "gpu_instance_types" {
  description = "GPU instance types the Kubernetes GPU NodePool may use; exported for the overlay and the cost table."
  type        = list(string)
  default     = ["g6.xlarge", "g6.2xlarge", "g6e.xlarge", "g6e.2xlarge", "g6.12xlarge", "g6e.12xlarge"]
}

variable "github_repository" {
  description = "owner/name of the repository whose workflows plan and apply this environment. Null: no CI roles."
  type        = string
  default     = null
}

variable "state_bucket_name" {
  description = "Terraform state bucket (bootstrap output), for the CI plan role's lock-file permission. Required with github_repository."
  type        = string
  default     = null
}

variable "registry_prefix" {
  description = "ECR repositories <registry_prefix>/gateway and <registry_prefix>/engine, created by terraform/shared for both environments."
  type        = string
  default     = "inferstack"
}

variable "domain_name" {
  description = "Public name of the gateway (api.example.com): an ACM certificate for its Ingress, and the gateway_url output. Null: the ALB's own hostname, plain HTTP."
  type        = string
  default     = null
}

variable "route53_zone_id" {
  description = "Route 53 zone of domain_name, for the certificate's DNS validation records. Null: add them to your DNS (output acm_validation_records)."
  type        = string
  default     = null
}

variable "elasticache_enabled" {
  description = "Gateway shared state in ElastiCache for Valkey (output redis_url). False (default): the in-cluster Redis run by the k8s side."
  type        = bool
  default     = false
}
