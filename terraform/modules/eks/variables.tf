variable "cluster_name" {
  description = "EKS cluster name. Also the value of the `karpenter.sh/discovery` tag."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,37}[a-zA-Z0-9]$", var.cluster_name))
    error_message = "cluster_name must start with a letter and be 2-39 letters, digits or dashes (IAM role names are derived from it)."
  }
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the control plane, for example \"1.35\". Must be in EKS standard support (terraform/eks-support-calendar.csv)."
  type        = string
  default     = "1.35"

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.35."
  }
}

variable "compute_mode" {
  description = <<-EOT
    How nodes are provisioned:
    "auto"      - EKS Auto Mode: AWS runs Karpenter, the VPC CNI, kube-proxy, CoreDNS, EBS CSI and the
                  load balancer controller; you add a GPU NodePool pointing at an eks.amazonaws.com NodeClass.
    "karpenter" - a small managed node group for system pods plus self-managed Karpenter (see the
                  karpenter module) and EKS managed add-ons. No Auto Mode fee on GPU instances.
  EOT
  type        = string
  default     = "auto"

  validation {
    condition     = contains(["auto", "karpenter"], var.compute_mode)
    error_message = "compute_mode must be \"auto\" or \"karpenter\"."
  }
}

variable "vpc_id" {
  description = "VPC the cluster lives in."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (at least two AZs) for control-plane ENIs and nodes. Never public subnets."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "EKS needs subnets in at least two availability zones."
  }
}

variable "endpoint_public_access" {
  description = "Expose the Kubernetes API endpoint on the internet (restricted by public_access_cidrs). The private endpoint is always on."
  type        = bool
  default     = true
}

variable "public_access_cidrs" {
  description = "CIDRs allowed to reach the public API endpoint. Narrow this to your office / VPN / CI egress."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.public_access_cidrs : can(cidrhost(c, 0))])
    error_message = "public_access_cidrs must be valid CIDR blocks."
  }
}

variable "log_types" {
  description = "Control-plane log types sent to CloudWatch."
  type        = list(string)
  default     = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  validation {
    condition     = alltrue([for t in var.log_types : contains(["api", "audit", "authenticator", "controllerManager", "scheduler"], t)])
    error_message = "log_types must be among api, audit, authenticator, controllerManager, scheduler."
  }
}

variable "log_retention_days" {
  description = "Days to keep control-plane logs."
  type        = number
  default     = 90

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention value (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

variable "bootstrap_creator_admin" {
  description = "Give the identity running `terraform apply` cluster-admin through an access entry. Turn off once access_entries names your admins (changing it replaces the cluster, so decide early)."
  type        = bool
  default     = true
}

variable "access_entries" {
  description = <<-EOT
    IAM principals allowed into the cluster, keyed by a short name. policy is an EKS access policy name
    (AmazonEKSClusterAdminPolicy, AmazonEKSAdminPolicy, AmazonEKSEditPolicy, AmazonEKSViewPolicy);
    namespaces limits it to those namespaces (cluster-wide when empty).
  EOT
  type = map(object({
    principal_arn = string
    policy        = optional(string, "AmazonEKSClusterAdminPolicy")
    namespaces    = optional(list(string), [])
  }))
  default = {}

  validation {
    condition = alltrue([for e in values(var.access_entries) : contains(
    ["AmazonEKSClusterAdminPolicy", "AmazonEKSAdminPolicy", "AmazonEKSEditPolicy", "AmazonEKSViewPolicy"], e.policy)])
    error_message = "access_entries[*].policy must be one of AmazonEKSClusterAdminPolicy, AmazonEKSAdminPolicy, AmazonEKSEditPolicy, AmazonEKSViewPolicy."
  }

  validation {
    condition     = alltrue([for e in values(var.access_entries) : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", e.principal_arn))])
    error_message = "access_entries[*].principal_arn must be an IAM role or user ARN (not an sts assumed-role ARN)."
  }
}

variable "auto_mode_node_pools" {
  description = "Built-in Auto Mode node pools (CPU only). The gateway and system pods run here; GPUs come from your own NodePool."
  type        = list(string)
  default     = ["system", "general-purpose"]

  validation {
    condition     = alltrue([for p in var.auto_mode_node_pools : contains(["system", "general-purpose"], p)])
    error_message = "auto_mode_node_pools may contain only \"system\" and \"general-purpose\"."
  }
}

variable "system_node_group" {
  description = "Karpenter mode only: the managed node group that runs Karpenter itself, CoreDNS and other critical add-ons."
  type = object({
    instance_types = optional(list(string), ["m7i.large", "m6i.large"])
    min_size       = optional(number, 2)
    max_size       = optional(number, 3)
    desired_size   = optional(number, 2)
    disk_size_gib  = optional(number, 50)
    # Tainted so that only pods tolerating CriticalAddonsOnly (Karpenter, CoreDNS, ...) land here.
    taint_critical_addons_only = optional(bool, true)
  })
  default = {}

  validation {
    condition = (var.system_node_group.min_size >= 1 && var.system_node_group.min_size <= var.system_node_group.desired_size
    && var.system_node_group.desired_size <= var.system_node_group.max_size)
    error_message = "system_node_group needs 1 <= min_size <= desired_size <= max_size: Karpenter cannot run on nodes it creates."
  }
}

variable "addon_versions" {
  description = "Karpenter mode: pin managed add-on versions by name (vpc-cni, kube-proxy, eks-pod-identity-agent, coredns, aws-ebs-csi-driver). Unset = the default version for the cluster's Kubernetes version."
  type        = map(string)
  default     = {}
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the secrets-encryption KMS key is deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_deletion_window_days >= 7 && var.kms_deletion_window_days <= 30
    error_message = "kms_deletion_window_days must be between 7 and 30."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
